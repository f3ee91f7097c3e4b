/* liburing 2.3 shims: provided-buffer ring setup/teardown (io_uring_setup_buf_ring arrived in 2.4) and the
 * min_wait batched wait (kernel 6.12; liburing 2.3 names the field `pad` and always zeroes it).
 * Called by the reactor that owns the ring, on its own thread. */
#include "io/uring_compat.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>

struct io_uring_buf_ring *rmq_uring_setup_buf_ring(struct io_uring *ring, unsigned nentries, int bgid,
						   int *err)
{
	size_t sz = (size_t)nentries * sizeof(struct io_uring_buf);
	/* Page-aligned memory is what the kernel requires for the ring itself. */
	void *p = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (p == MAP_FAILED) {
		*err = -errno;
		return NULL;
	}
	struct io_uring_buf_reg reg = {
		.ring_addr = (unsigned long)p, .ring_entries = nentries, .bgid = (__u16)bgid};
	int rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc) {
		munmap(p, sz);
		*err = rc;
		return NULL;
	}
	struct io_uring_buf_ring *br = p;
	io_uring_buf_ring_init(br);
	*err = 0;
	return br;
}

void rmq_uring_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned nentries,
			     int bgid)
{
	if (!br)
		return;
	io_uring_unregister_buf_ring(ring, bgid);
	munmap(br, (size_t)nentries * sizeof(struct io_uring_buf));
}

/* struct io_uring_getevents_arg as of kernel 6.12: the old `pad` is min_wait_usec. */
struct rmq_getevents_arg {
	__u64 sigmask;
	__u32 sigmask_sz;
	__u32 min_wait_usec;
	__u64 ts;
};

/* liburing 2.3's __io_uring_flush_sq (not exported): publish the SQEs queued since the last flush. */
static unsigned flush_sq(struct io_uring *ring)
{
	struct io_uring_sq *sq = &ring->sq;
	unsigned tail = sq->sqe_tail;
	if (sq->sqe_head != tail) {
		sq->sqe_head = tail;
		io_uring_smp_store_release(sq->ktail, tail);
	}
	return tail - *sq->khead;
}

int rmq_uring_submit_wait_min(struct io_uring *ring, unsigned wait_nr, unsigned min_wait_us,
			      const struct __kernel_timespec *ts)
{
	struct rmq_getevents_arg arg = {
		.min_wait_usec = min_wait_us, .ts = (__u64)(uintptr_t)ts};
	return io_uring_enter2((unsigned)ring->ring_fd, flush_sq(ring), wait_nr,
			       IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG, (sigset_t *)&arg, sizeof(arg));
}

int rmq_uring_probe_min_wait(struct io_uring *ring)
{
	/* Kernels before 6.12 refuse a non-zero pad with -EINVAL; wait_nr 0 returns at once. */
	int rc = rmq_uring_submit_wait_min(ring, 0, 1, NULL);
	return rc < 0 ? rc : 0;
}
