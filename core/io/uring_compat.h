/* liburing 2.3 shims: provided-buffer ring setup/teardown, MSG_RING fd passing (added in 2.4), and the
 * bounded batched wait of kernel 6.12 (min_wait, no liburing wrapper yet).
 * Called by the reactor that owns the ring, on its own thread. */
#ifndef RMQ_CORE_URING_COMPAT_H
#define RMQ_CORE_URING_COMPAT_H

#include <liburing.h>

/* Maps and registers a buffer ring of `nentries` (power of 2) for buffer group `bgid`.
 * Returns the ring or NULL with *err = -errno. */
struct io_uring_buf_ring *rmq_uring_setup_buf_ring(struct io_uring *ring, unsigned nentries, int bgid,
						   int *err);
void rmq_uring_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned nentries,
			     int bgid);

/* IORING_MSG_SEND_FD: installs fixed file `source_fd` of the sender's ring as fixed file
 * `target_fd` in the ring `fd`, posting a CQE with `data` there. */
static inline void rmq_uring_prep_msg_ring_fd(struct io_uring_sqe *sqe, int fd, int source_fd,
					      int target_fd, __u64 data, unsigned flags)
{
	io_uring_prep_rw(IORING_OP_MSG_RING, sqe, fd, (void *)(uintptr_t)IORING_MSG_SEND_FD, 0, data);
	sqe->addr3 = (__u64)source_fd;
	sqe->file_index = (__u32)target_fd + 1;
	sqe->msg_ring_flags = flags;
}

/* Submits what is queued and waits, in one io_uring_enter: for `wait_nr` completions, but once `min_wait_us`
 * have passed, for any one, up to `ts` (NULL: the kernel then returns at once, even with nothing done).
 * wait_nr 0: reap without sleeping. Returns what io_uring_enter returns (-errno on error; -ETIME when a bound
 * passed with nothing done). */
int rmq_uring_submit_wait_min(struct io_uring *ring, unsigned wait_nr, unsigned min_wait_us,
			      const struct __kernel_timespec *ts);
/* 0 when the kernel honours min_wait (6.12+), -EINVAL when it predates it. */
int rmq_uring_probe_min_wait(struct io_uring *ring);

#endif
