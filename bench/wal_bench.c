/* ringmq-wal-bench: append rate of core/store/wal.c per fsync policy with 256 B records, driven like a reactor
 * (stage a burst, prep, submit, reap) on a private io_uring. Single-threaded tool: main thread only. */
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/wal.h"

#define REC 256
#define BURST 64          /* records staged per loop iteration: a busy reactor's worth of PUBLISHes */
#define UD 0x5700000000000000ull

struct run {
	uint64_t durable;
	uint64_t outstanding;
};

static void on_done(void *ud, uint64_t cookie, uint64_t seq, int err)
{
	(void)cookie;
	(void)seq;
	struct run *r = ud;
	if (err) {
		fprintf(stderr, "wal-bench: commit failed: %s\n", strerror(-err));
		exit(1);
	}
	r->durable++;
	r->outstanding--;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static void reap(struct rmq_wal *w, struct io_uring *ring, bool wait)
{
	struct io_uring_cqe *cqe;
	io_uring_submit(ring);
	if (wait && io_uring_wait_cqe(ring, &cqe) < 0)
		return;
	while (io_uring_peek_cqe(ring, &cqe) == 0) {
		uint64_t u = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		rmq_wal_complete(w, u, res);
	}
}

/* max_out: records allowed to wait for their commit (1 = each append waits for the previous one's fsync,
 * what a single car with a QoS 1 window of 1 sees). */
static void bench(const char *base, const char *label, enum rmq_wal_fsync pol, uint64_t max_out, double secs)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/wal-bench-%d-%s", base, (int)getpid(), label);
	struct io_uring ring;
	if (io_uring_queue_init(256, &ring, 0)) {
		perror("io_uring_queue_init");
		exit(1);
	}
	struct rmq_wal_opts o = { .fsync = pol };
	struct rmq_wal *w;
	int rc = rmq_wal_open(&w, dir, &o, NULL, NULL, NULL);
	if (rc) {
		fprintf(stderr, "wal-bench: open %s: %s\n", dir, strerror(-rc));
		exit(1);
	}
	struct run r = { 0 };
	rmq_wal_set_callbacks(w, on_done, NULL, &r);
	uint8_t rec[REC];
	memset(rec, 0xab, sizeof(rec));
	double t0 = now_s(), t;
	uint64_t appended = 0;
	while ((t = now_s()) - t0 < secs) {
		for (int i = 0; i < BURST && r.outstanding < max_out; i++) {
			if (rmq_wal_append(w, 1, rec, REC, 1) < 0)
				break;   /* -ENOBUFS: the stage is full, let the disk catch up */
			appended++;
			r.outstanding++;
		}
		if (rmq_wal_prep(w, &ring, UD) < 0)
			break;
		reap(w, &ring, r.outstanding >= max_out || rmq_wal_append(w, 1, rec, 0, 0) == -ENOBUFS);
	}
	double el = now_s() - t0;
	rmq_wal_drain(w, &ring, UD);
	struct rmq_wal_stats st;
	rmq_wal_stats(w, &st);
	printf("%-22s %10.0f appends/s %8.1f MB/s  %8lu fsyncs  %6.1f rec/fsync  commit p99 %6lu us max %6lu us\n",
	       label, (double)r.durable / el, (double)r.durable * REC / el / 1e6, (unsigned long)st.fsyncs,
	       st.fsyncs ? (double)r.durable / (double)st.fsyncs : 0.0, (unsigned long)st.commit_p99_us,
	       (unsigned long)st.commit_max_us);
	rmq_wal_close(w);
	io_uring_queue_exit(&ring);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
	(void)appended;
}

/* Start-up recovery of an mb-MiB log (page cache warm: it was just written; a cold disk adds its read time). */
static void bench_recovery(const char *base, uint64_t mb)
{
	char dir[512];
	snprintf(dir, sizeof(dir), "%s/wal-bench-%d-recovery", base, (int)getpid());
	struct io_uring ring;
	if (io_uring_queue_init(256, &ring, 0)) {
		perror("io_uring_queue_init");
		exit(1);
	}
	struct rmq_wal_opts o = { .fsync = RMQ_WAL_FSYNC_NEVER };
	struct rmq_wal *w;
	if (rmq_wal_open(&w, dir, &o, NULL, NULL, NULL)) {
		fprintf(stderr, "wal-bench: open %s failed\n", dir);
		exit(1);
	}
	uint8_t rec[REC];
	memset(rec, 0xcd, sizeof(rec));
	uint64_t n = (mb << 20) / (REC + RMQ_WAL_HDR);
	for (uint64_t i = 0; i < n;) {
		bool full = false;
		for (int k = 0; k < BURST && i < n && !full; k++) {
			if (rmq_wal_append(w, 1, rec, REC, 0) > 0)
				i++;
			else
				full = true;   /* the stage is full: wait for the write in flight */
		}
		rmq_wal_prep(w, &ring, UD);
		reap(w, &ring, full);
	}
	rmq_wal_drain(w, &ring, UD);
	rmq_wal_close(w);
	struct rmq_wal_recovery rec_st;
	if (rmq_wal_open(&w, dir, &o, NULL, NULL, &rec_st)) {
		fprintf(stderr, "wal-bench: reopen failed\n");
		exit(1);
	}
	printf("recovery of %lu MiB: %lu records in %u segments, %.3f s (%.0f MB/s)\n", (unsigned long)mb,
	       (unsigned long)rec_st.records, rec_st.segments, (double)rec_st.usec / 1e6,
	       (double)(rec_st.bytes + rec_st.records * RMQ_WAL_HDR) / (double)(rec_st.usec ? rec_st.usec : 1));
	rmq_wal_close(w);
	io_uring_queue_exit(&ring);
	nftw(dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static void usage(void)
{
	fprintf(stderr, "usage: ringmq-wal-bench [-d DIR (default /tmp: the disk to measure)] [-t SECONDS per policy]\n"
			"                        [-r MIB: also time the recovery of a log this big]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *dir = "/tmp";
	double secs = 0.5;
	uint64_t rec_mb = 0;
	int c;
	while ((c = getopt(argc, argv, "d:t:r:h")) != -1) {
		if (c == 'd')
			dir = optarg;
		else if (c == 'r')
			rec_mb = strtoull(optarg, NULL, 10);
		else if (c == 't')
			secs = atof(optarg);
		else
			usage();
	}
	if (secs <= 0)
		usage();
	printf("wal: %d B records, bursts of %d, data in %s, %.1f s per policy\n", REC, BURST, dir, secs);
	bench(dir, "always (1 in flight)", RMQ_WAL_FSYNC_ALWAYS, 1, secs);
	bench(dir, "always", RMQ_WAL_FSYNC_ALWAYS, UINT64_MAX, secs);
	bench(dir, "batch (2 ms)", RMQ_WAL_FSYNC_BATCH, UINT64_MAX, secs);
	bench(dir, "never", RMQ_WAL_FSYNC_NEVER, UINT64_MAX, secs);
	if (rec_mb)
		bench_recovery(dir, rec_mb);
	return 0;
}
