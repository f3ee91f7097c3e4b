/* liburing 2.3 shims: provided-buffer ring setup/teardown and MSG_RING fd passing (added in 2.4).
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

#endif
