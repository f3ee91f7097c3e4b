/* Shared helpers of test_wal.c and test_spool.c: temporary data dirs, a private io_uring, pumping it.
 * Test thread only. */
#ifndef RMQ_TEST_WAL_HELPERS_H
#define RMQ_TEST_WAL_HELPERS_H

#include <criterion/criterion.h>
#include <dirent.h>
#include <ftw.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/wal.h"

#define UD_WAL 0x4200000000000000ull   /* the tests' ud_base: the log owns the low 32 bits */

struct tdir {
	char path[64];
};

static inline void tdir_make(struct tdir *d)
{
	snprintf(d->path, sizeof(d->path), "/tmp/rmq-wal-test-XXXXXX");
	cr_assert_not_null(mkdtemp(d->path));
}

static inline int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb; (void)flag; (void)ftw;
	return remove(p);
}

static inline void tdir_remove(struct tdir *d)
{
	nftw(d->path, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static inline int count_files(const char *dir, const char *suffix)
{
	DIR *dd = opendir(dir);
	if (!dd)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(dd))) {
		size_t l = strlen(e->d_name), s = strlen(suffix);
		if (l > s && strcmp(e->d_name + l - s, suffix) == 0)
			n++;
	}
	closedir(dd);
	return n;
}

static inline void ring_init(struct io_uring *ring)
{
	cr_assert_eq(io_uring_queue_init(64, ring, 0), 0);
}

/* One reactor iteration for the log: prep, submit, wait (bounded) for a completion if any is due, reap. */
static inline void wal_step(struct rmq_wal *w, struct io_uring *ring)
{
	int rc = rmq_wal_prep(w, ring, UD_WAL);
	cr_assert_geq(rc, 0, "prep: %d", rc);
	io_uring_submit(ring);
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 2 };
	if (!rmq_wal_idle(w))
		io_uring_wait_cqe_timeout(ring, &cqe, &ts);
	while (io_uring_peek_cqe(ring, &cqe) == 0) {
		uint64_t u = cqe->user_data;
		int res = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		cr_assert_eq(u & ~0xffffffffull, UD_WAL);
		rmq_wal_complete(w, u, res);
	}
}

static inline void file_corrupt(const char *path, long off)
{
	FILE *f = fopen(path, "r+b");
	cr_assert_not_null(f);
	cr_assert_eq(fseek(f, off, SEEK_SET), 0);
	int c = fgetc(f);
	cr_assert_eq(fseek(f, off, SEEK_SET), 0);
	fputc(c ^ 0x5a, f);
	fclose(f);
}

/* One data dir and one ring per test (Criterion runs each test in its own process). */
static struct tdir td;
static struct io_uring ring;

static inline void suite_setup(void)
{
	tdir_make(&td);
	ring_init(&ring);
}

static inline void suite_teardown(void)
{
	io_uring_queue_exit(&ring);
	tdir_remove(&td);
}

#endif
