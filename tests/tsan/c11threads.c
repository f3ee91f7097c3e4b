/* ThreadSanitizer build only (make tsan): C11 thread creation on top of pthreads, so that TSan sees the threads.
 * librdkafka creates its threads with glibc's thrd_create, which calls glibc's pthread internals directly: this
 * GCC's libtsan does not intercept it, so a librdkafka thread ran without TSan state (SEGV in TSan's allocator at
 * its first malloc). Linked as a shared library ahead of libc, these definitions take the place of glibc's.
 * librdkafka's mutexes stay glibc's (invisible to TSan, like the rest of its uninstrumented code: tsan.supp). */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

struct start {
	thrd_start_t fn;
	void *arg;
};

static int result(int rc)
{
	return rc == 0 ? thrd_success : rc == ENOMEM ? thrd_nomem : thrd_error;
}

static void *trampoline(void *p)
{
	struct start s = *(struct start *)p;
	free(p);
	return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
	struct start *s = malloc(sizeof(*s));
	if (!s)
		return thrd_nomem;
	*s = (struct start){fn, arg};
	int rc = pthread_create(thr, NULL, trampoline, s);
	if (rc)
		free(s);
	return result(rc);
}

int thrd_join(thrd_t thr, int *res)
{
	void *v;
	int rc = pthread_join(thr, &v);
	if (rc == 0 && res)
		*res = (int)(intptr_t)v;
	return result(rc);
}

int thrd_detach(thrd_t thr) { return result(pthread_detach(thr)); }
