/* The unit-test runner of the ThreadSanitizer build (make tsan), standing in for Criterion's (which cannot start
 * under TSan, see criterion/criterion.h here): each registered test runs in its own forked child, with its suite's
 * init/fini and a timeout, -jN children at once, and the same Synthesis line as Criterion. Single-threaded. */
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define MAX_TESTS 2048
#define MAX_SUITES 256
#define MAX_JOBS 16
#define DEFAULT_TIMEOUT_S 120    /* TSan runs code 5-15x slower than the Debug build */
#define TSAN_SLOWDOWN 4          /* a test's own .timeout is for Criterion's Debug build */

struct test {
	const char *suite, *name;
	void (*fn)(void);
	const struct rmq_shim_opts *opts;
};

struct suite {
	const char *name;
	const struct rmq_shim_opts *opts;
};

/* Registration happens in constructors, before main: these tables are written once and then only read. */
static struct test tests[MAX_TESTS];
static int ntests;
static struct suite suites[MAX_SUITES];
static int nsuites;
static void (*cur_fini)(void);   /* the running test's fini, in its child: also run after a fatal check */
static int cur_failed;

void rmq_shim_register_test(const char *suite, const char *name, void (*fn)(void), const struct rmq_shim_opts *o)
{
	if (ntests == MAX_TESTS) {
		fprintf(stderr, "unit_runner: more than %d tests\n", MAX_TESTS);
		abort();
	}
	tests[ntests++] = (struct test){ suite, name, fn, o };
}

void rmq_shim_register_suite(const char *suite, const struct rmq_shim_opts *o)
{
	if (nsuites == MAX_SUITES) {
		fprintf(stderr, "unit_runner: more than %d suites\n", MAX_SUITES);
		abort();
	}
	suites[nsuites++] = (struct suite){ suite, o };
}

void rmq_shim_fail(bool fatal, const char *file, int line, const char *expr, const char *fmt, ...)
{
	fprintf(stderr, "[FAIL] %s:%d: %s", file, line, expr);
	if (fmt[0] && fmt[1]) {
		va_list ap;
		va_start(ap, fmt);
		fputc(':', stderr);
		vfprintf(stderr, fmt, ap);
		va_end(ap);
	}
	fputc('\n', stderr);
	cur_failed = 1;
	if (fatal) {
		if (cur_fini)
			cur_fini();
		fflush(NULL);
		_exit(1);
	}
}

static const struct rmq_shim_opts *suite_opts(const char *name)
{
	static const struct rmq_shim_opts none;
	for (int i = 0; i < nsuites; i++)
		if (strcmp(suites[i].name, name) == 0)
			return suites[i].opts;
	return &none;
}

static void run_child(const struct test *t)
{
	const struct rmq_shim_opts *s = suite_opts(t->suite);
	void (*init)(void) = t->opts->init ? t->opts->init : s->init;
	double timeout = t->opts->timeout > 0 ? t->opts->timeout : s->timeout;
	cur_fini = t->opts->fini ? t->opts->fini : s->fini;
	unsigned secs = timeout > 0 ? (unsigned)(timeout * TSAN_SLOWDOWN) : DEFAULT_TIMEOUT_S;
	alarm(secs ? secs : 1);
	if (init)
		init();
	t->fn();
	if (cur_fini)
		cur_fini();
	fflush(NULL);
	_exit(cur_failed);
}

struct running {
	pid_t pid;
	int test;
};

/* Waits for one child; returns its slot index. Counts the result. */
static int reap(struct running *run, int nrun, int *passing, int *failing, int *crashing)
{
	int status;
	pid_t pid = waitpid(-1, &status, 0);
	if (pid < 0) {
		perror("unit_runner: waitpid");
		exit(2);
	}
	for (int i = 0; i < nrun; i++) {
		if (run[i].pid != pid)
			continue;
		const struct test *t = &tests[run[i].test];
		if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
			(*passing)++;
		} else if (WIFEXITED(status)) {
			(*failing)++;
			fprintf(stderr, "[FAIL] %s::%s: exit %d%s\n", t->suite, t->name, WEXITSTATUS(status),
				WEXITSTATUS(status) == 66 ? " (ThreadSanitizer report above)" : "");
		} else {
			(*crashing)++;
			fprintf(stderr, "[FAIL] %s::%s: %s\n", t->suite, t->name,
				WTERMSIG(status) == SIGALRM ? "timed out" : strsignal(WTERMSIG(status)));
		}
		return i;
	}
	return -1;
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	int jobs = 1;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc)
			filter = argv[++i];
		else if (strncmp(argv[i], "-j", 2) == 0 && argv[i][2])
			jobs = atoi(argv[i] + 2);
		else if (strcmp(argv[i], "--list") == 0 || strcmp(argv[i], "-l") == 0) {
			for (int k = 0; k < ntests; k++)
				printf("%s/%s\n", tests[k].suite, tests[k].name);
			return 0;
		} else {
			fprintf(stderr, "usage: %s [--filter SUITE/NAME-GLOB] [-jN] [--list]\n", argv[0]);
			return 2;
		}
	}
	if (jobs < 1 || jobs > MAX_JOBS) {
		fprintf(stderr, "unit_runner: -j wants 1..%d\n", MAX_JOBS);
		return 2;
	}
	struct running run[MAX_JOBS];
	int nrun = 0, tested = 0, passing = 0, failing = 0, crashing = 0;
	for (int k = 0; k < ntests; k++) {
		char full[512];
		snprintf(full, sizeof full, "%s/%s", tests[k].suite, tests[k].name);
		if ((filter && fnmatch(filter, full, 0) != 0) || tests[k].opts->disabled)
			continue;
		if (nrun == jobs) {
			int i = reap(run, nrun, &passing, &failing, &crashing);
			run[i] = run[--nrun];
		}
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("unit_runner: fork");
			return 2;
		}
		if (pid == 0)
			run_child(&tests[k]);
		run[nrun++] = (struct running){ .pid = pid, .test = k };
		tested++;
	}
	while (nrun > 0) {
		int i = reap(run, nrun, &passing, &failing, &crashing);
		run[i] = run[--nrun];
	}
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n", tested, passing, failing,
	       crashing);
	return failing || crashing ? 1 : 0;
}
