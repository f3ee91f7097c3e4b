/* The subset of Criterion's API that tests/unit uses, for the ThreadSanitizer build only (make tsan): Criterion's
 * own runner cannot start under TSan (its sandbox maps an arena where TSan keeps its shadow, Criterion #274), so
 * build-tsan compiles the same test files against this header and tests/tsan/unit_runner.c, which runs each test in
 * a forked child as Criterion does. Single-threaded registration (constructors); the checks run in the test. */
#ifndef RINGMQ_TSAN_CRITERION_SHIM_H
#define RINGMQ_TSAN_CRITERION_SHIM_H

/* What Criterion's header brings in too, which the test files rely on. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rmq_shim_opts {
	void (*init)(void);
	void (*fini)(void);
	double timeout;            /* seconds; 0: the runner's default */
	bool disabled;
	const char *description;
};

void rmq_shim_register_test(const char *suite, const char *name, void (*fn)(void), const struct rmq_shim_opts *o);
void rmq_shim_register_suite(const char *suite, const struct rmq_shim_opts *o);
/* A failed check: prints where and why (fmt: a space, then the test's own message if any); fatal ends the test. */
void rmq_shim_fail(bool fatal, const char *file, int line, const char *expr, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

/* Names pasted from the suite and test names as written (## keeps them from macro expansion). */
#define RMQ_SHIM_ID(kind, suite, name) rmq_shim_##kind##_##suite##_##name

#define TestSuite(suite, ...)                                                                                  \
	static const struct rmq_shim_opts RMQ_SHIM_ID(sopts, suite, x) = { __VA_ARGS__ };                     \
	__attribute__((constructor)) static void RMQ_SHIM_ID(sreg, suite, x)(void)                             \
	{                                                                                                      \
		rmq_shim_register_suite(#suite, &RMQ_SHIM_ID(sopts, suite, x));                                 \
	}                                                                                                      \
	struct rmq_shim_semicolon

#define Test(suite, name, ...)                                                                                 \
	static void RMQ_SHIM_ID(test, suite, name)(void);                                                      \
	static const struct rmq_shim_opts RMQ_SHIM_ID(opts, suite, name) = { __VA_ARGS__ };                   \
	__attribute__((constructor)) static void RMQ_SHIM_ID(reg, suite, name)(void)                           \
	{                                                                                                      \
		rmq_shim_register_test(#suite, #name, RMQ_SHIM_ID(test, suite, name),                           \
				       &RMQ_SHIM_ID(opts, suite, name));                                        \
	}                                                                                                      \
	static void RMQ_SHIM_ID(test, suite, name)(void)

/* " " __VA_ARGS__: the optional message (a format string literal and its arguments, or nothing) after a space. */
#define RMQ_SHIM_CHECK(fatal, cond, expr, ...)                                                                 \
	do {                                                                                                   \
		if (!(cond))                                                                                   \
			rmq_shim_fail(fatal, __FILE__, __LINE__, expr, " " __VA_ARGS__);                         \
	} while (0)

#define cr_assert(c, ...) RMQ_SHIM_CHECK(true, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...) RMQ_SHIM_CHECK(false, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...) RMQ_SHIM_CHECK(true, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_fail(...) RMQ_SHIM_CHECK(true, false, "cr_assert_fail", __VA_ARGS__)
#define cr_assert_null(p, ...) RMQ_SHIM_CHECK(true, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) RMQ_SHIM_CHECK(true, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) RMQ_SHIM_CHECK(true, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) RMQ_SHIM_CHECK(false, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) RMQ_SHIM_CHECK(true, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) RMQ_SHIM_CHECK(true, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) RMQ_SHIM_CHECK(true, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) RMQ_SHIM_CHECK(true, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) RMQ_SHIM_CHECK(true, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_float_eq(a, b, eps, ...)                                                                     \
	RMQ_SHIM_CHECK(true, fabs((double)(a) - (double)(b)) <= (double)(eps), #a " ~= " #b, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) RMQ_SHIM_CHECK(true, strcmp((a), (b)) == 0, #a " == " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) RMQ_SHIM_CHECK(true, strcmp((a), (b)) != 0, #a " != " #b, __VA_ARGS__)
#define cr_assert_str_empty(a, ...) RMQ_SHIM_CHECK(true, (a)[0] == '\0', #a " is empty", __VA_ARGS__)

#endif
