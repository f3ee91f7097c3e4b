/* The clocks every module reads: monotonic for intervals and deadlines, wall time only where a timestamp leaves the
 * process (Kafka record timestamps, times kept on disk across restarts). Header-only; any thread. */
#ifndef RINGMQ_CLOCK_H
#define RINGMQ_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t rmq_clock_ns_(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Monotonic milliseconds: deadlines, timeouts, rates. */
static inline uint64_t rmq_clock_mono_ms(void) { return rmq_clock_ns_(CLOCK_MONOTONIC) / 1000000u; }

/* Monotonic microseconds: latency figures (commit times, ack latency). */
static inline uint64_t rmq_clock_mono_us(void) { return rmq_clock_ns_(CLOCK_MONOTONIC) / 1000u; }

/* Monotonic milliseconds at the kernel tick's resolution (1-4 ms), without a vDSO clock read: the reactor's
 * once-per-loop `now`, where the timer wheel's 10 ms ticks make finer time useless. */
static inline uint64_t rmq_clock_coarse_ms(void) { return rmq_clock_ns_(CLOCK_MONOTONIC_COARSE) / 1000000u; }

/* Wall-clock milliseconds since the epoch: only for timestamps other processes or a later run read. */
static inline uint64_t rmq_clock_wall_ms(void) { return rmq_clock_ns_(CLOCK_REALTIME) / 1000000u; }

#endif
