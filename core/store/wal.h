/* Per-core append-only log (--data-dir DIR/core-N/...): checksummed records in size-bounded segment files,
 * group commit through the owner's io_uring, start-up recovery, compaction. One reactor thread owns each log. */
#ifndef RMQ_CORE_WAL_H
#define RMQ_CORE_WAL_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* On disk. A segment is a file DIR/<first seq, 16 hex digits>.wal holding back-to-back records:
 *
 *   u32 crc     CRC32C (Castagnoli) of everything after this field: header rest + payload
 *   u32 len     payload bytes
 *   u16 type    caller's record type (1..RMQ_WAL_TYPE_MAX); 0xff00.. are the log's own markers
 *   u16 zero    reserved, must be 0
 *   u64 seq     sequence number: +1 per record across the whole log, never reused
 *   payload
 *
 * All little-endian, no padding between records. A segment is closed once it passes segment_bytes (soft:
 * a record never straddles two files). Compaction starts a new segment with SNAP_BEGIN, the caller's
 * snapshot of its live state, SNAP_END; once that is durable every older segment is deleted. Recovery
 * replays from the newest segment that holds a complete snapshot (or the oldest segment if none does). */
#define RMQ_WAL_HDR 20u
#define RMQ_WAL_TYPE_MAX 0xfeffu
#define RMQ_WAL_REC_MAX (64u << 20)   /* a longer length field is corruption, not a record */

enum rmq_wal_fsync {
	RMQ_WAL_FSYNC_BATCH = 0,  /* group commit: one write + fdatasync per batch_us window (default) */
	RMQ_WAL_FSYNC_ALWAYS,     /* write + fdatasync as soon as the previous one is done: lowest latency */
	RMQ_WAL_FSYNC_NEVER,      /* write only; the page cache decides (a power cut loses recent records) */
};

struct rmq_wal;

struct rmq_wal_opts {
	enum rmq_wal_fsync fsync;
	uint32_t batch_us;         /* batch: longest a record waits for its group commit; 0 = 2000 */
	uint64_t segment_bytes;    /* roll to a new file past this; 0 = 64 MiB */
	uint32_t stage_max;        /* staged, unwritten bytes past which append says -ENOBUFS; 0 = 8 MiB */
	uint32_t write_max;        /* largest single write (also: batch flushes early at this); 0 = 1 MiB */
	uint64_t compact_bytes;    /* auto-compact once this much was logged since the last snapshot; 0 = never */
	bool quiet;                /* no warning line on stderr (tests of corruption) */
};

/* Called once per valid record during rmq_wal_open, in log order. data is valid during the call only.
 * Return 0, or a negative errno to abort the open (it then fails with that value). */
typedef int (*rmq_wal_replay_fn)(void *ud, uint16_t type, uint64_t seq, const uint8_t *data, uint32_t len);
/* A record appended with a non-zero cookie is durable (per the fsync policy): err 0; or it never will be:
 * err < 0 (I/O error: the log is then failed and refuses further appends). Called from rmq_wal_complete,
 * in append order. */
typedef void (*rmq_wal_done_fn)(void *ud, uint64_t cookie, uint64_t seq, int err);
/* Compaction: re-append (rmq_wal_append) one record per piece of live state. Runs on the owner thread,
 * inside rmq_wal_compact or rmq_wal_prep. Return 0 or a negative errno (the snapshot is then abandoned). */
typedef int (*rmq_wal_snapshot_fn)(void *ud, struct rmq_wal *w);

struct rmq_wal_recovery {
	uint64_t records, bytes;   /* caller records replayed, and their payload bytes */
	uint64_t truncated_bytes;  /* torn or corrupt bytes cut off (then one warning line was printed) */
	uint32_t segments;         /* segment files kept */
	uint64_t first_seq, last_seq;
	uint64_t usec;             /* wall time of the recovery */
};

struct rmq_wal_stats {
	uint64_t appends, append_bytes;   /* records and payload bytes accepted since open */
	uint64_t disk_bytes;              /* bytes in live segment files (written) */
	uint64_t staged_bytes;            /* accepted, not yet written */
	uint64_t unsynced_records;        /* appended, completion not yet reported: the commit backlog */
	uint64_t writes, fsyncs;
	uint64_t commit_max_us, commit_p99_us;  /* write + fdatasync, submission to completion; p99 is the upper
						 * edge of its power-of-two bucket */
	uint64_t compactions, segments_deleted;
	uint32_t segments;
	uint64_t last_seq;
	int error;                        /* first I/O error (log failed), or 0 */
};

/* Opens (creating) the log in dir, replays every valid record through replay, truncates a torn or
 * corrupt tail (one warning line). Synchronous: start-up only. Returns 0 or -errno. */
int rmq_wal_open(struct rmq_wal **out, const char *dir, const struct rmq_wal_opts *o, rmq_wal_replay_fn replay,
		 void *ud, struct rmq_wal_recovery *rec);
void rmq_wal_set_callbacks(struct rmq_wal *w, rmq_wal_done_fn done, rmq_wal_snapshot_fn snapshot, void *ud);

/* Stages a record (never blocks, never touches the disk). Returns its seq (>= 1) or -EINVAL (type or
 * length), -ENOBUFS (stage_max reached: back off until completions drain it), -EIO (log failed). */
int64_t rmq_wal_append(struct rmq_wal *w, uint16_t type, const void *data, uint32_t len, uint64_t cookie);
int64_t rmq_wal_appendv(struct rmq_wal *w, uint16_t type, const struct iovec *iov, int iovcnt, uint64_t cookie);

/* Queues the disk work that is due on ring (write + linked fdatasync, segment open, deletions, the batch
 * timer). Every SQE gets user_data = ud_base | token: the log owns the low 32 bits of user_data. Call once
 * per loop iteration, after handling completions. Returns SQEs queued (not submitted) or -errno. */
int rmq_wal_prep(struct rmq_wal *w, struct io_uring *ring, uint64_t ud_base);
/* Hands a CQE whose user_data carried ud_base back to the log. Reports durable cookies. */
void rmq_wal_complete(struct rmq_wal *w, uint64_t user_data, int res);

/* Starts a compaction now (the snapshot callback runs before this returns). 0, -EBUSY (one is running),
 * -ENOENT (no snapshot callback) or the callback's error. */
int rmq_wal_compact(struct rmq_wal *w);
/* Deletes whole segments whose records all have seq < upto (never the active one): the spool's way to
 * drop what was delivered. Deletions go through the ring at the next prep. Returns segments scheduled. */
int rmq_wal_release(struct rmq_wal *w, uint64_t upto);

/* Nothing staged, in flight or scheduled. */
bool rmq_wal_idle(const struct rmq_wal *w);
/* Shutdown and tests: submits and waits on ring until idle (blocks). 0 or the log's error. */
int rmq_wal_drain(struct rmq_wal *w, struct io_uring *ring, uint64_t ud_base);
/* While rmq_wal_drain waits, completions that are not the log's (the owner's sends, another log's writes)
 * go to fn instead of being reaped unseen: an owner with two logs on one ring must not lose the other's
 * write completion, or that log never becomes idle. NULL (the default): they are dropped. */
typedef void (*rmq_wal_foreign_fn)(void *ud, struct io_uring_cqe *cqe);
void rmq_wal_set_foreign(struct rmq_wal *w, rmq_wal_foreign_fn fn, void *ud);
/* Closes the files. Records not yet written are lost: drain first. Their cookies are not reported. */
void rmq_wal_close(struct rmq_wal *w);

void rmq_wal_stats(const struct rmq_wal *w, struct rmq_wal_stats *st);
const char *rmq_wal_dir(const struct rmq_wal *w);

/* ---- reading back what was written (the spool's replay), through the same ring ----------------- */
/* Positions the reader at the first record with seq >= from. */
void rmq_wal_reader_seek(struct rmq_wal *w, uint64_t from);
/* Next written caller record after the reader's position: 0 and fills out (pointers valid until the next
 * rmq_wal_prep or rmq_wal_reader_next); -EAGAIN (read pending, or nothing written yet: call prep);
 * -EIO (corruption or I/O error). */
struct rmq_wal_rec {
	uint16_t type;
	uint64_t seq;
	const uint8_t *data;
	uint32_t len;
};
int rmq_wal_reader_peek(struct rmq_wal *w, struct rmq_wal_rec *out);
void rmq_wal_reader_next(struct rmq_wal *w);
/* Asks prep to keep the reader's buffer filled (off by default: a log that is only replayed at start-up
 * never reads). */
void rmq_wal_reader_enable(struct rmq_wal *w, bool on);

/* "always" | "batch" | "never" (--fsync) -> *out: 0 or -EINVAL. */
int rmq_wal_parse_fsync(const char *s, enum rmq_wal_fsync *out);
const char *rmq_wal_fsync_name(enum rmq_wal_fsync f);

uint32_t rmq_crc32c(uint32_t crc, const void *data, size_t len);

#endif
