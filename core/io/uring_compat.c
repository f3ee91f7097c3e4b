/* liburing 2.3 shims: provided-buffer ring setup/teardown (io_uring_setup_buf_ring arrived in 2.4).
 * Called by the reactor that owns the ring, on its own thread. */
#include "io/uring_compat.h"

#include <errno.h>
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
