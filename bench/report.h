/* ringmq-bench measurements and report: counter snapshots, /proc readings of the broker, the final report
 * (text, JSON) and the plot. Main thread only; reads the workers' counters through relaxed atomics. */
#ifndef RMQ_BENCH_REPORT_H
#define RMQ_BENCH_REPORT_H

#include "bench.h"

/* Sums of every worker's counters (and latency histograms) at one instant. */
struct rmq_bench_snap {
	uint64_t t_ns;
	uint64_t sent, expected, acked, received, dup, ooo, foreign, inflight, skipped, errors;
	uint64_t conn_ok, conn_refused, conn_failed, conn_dropped, ready;
	uint64_t bytes_out, bytes_in, writes, reads;
	uint64_t cmd_received, cmd_bytes;
	double loader_cpu_s;           /* this process, user + system */
	double broker_cpu_s;           /* -1 without --broker-pid or when unreadable */
	double machine_busy_s;         /* every CPU's non-idle time from /proc/stat (-1 if unreadable) */
	uint64_t broker_rss_kb;
	struct rmq_hist_snap lat, ack_lat, connack_lat, cmd_lat;
};

void rmq_bench_snap_take(struct rmq_bench_snap *s, const struct rmq_bench_run *run);

/* /proc readers; negative errno when the process is gone or the file unreadable. */
int rmq_bench_proc_cpu(int pid, double *cpu_s);
int rmq_bench_proc_rss(int pid, uint64_t *rss_kb);
/* Non-idle CPU seconds of the whole machine since boot (/proc/stat, all CPUs). */
int rmq_bench_proc_busy(double *busy_s);

/* One point per second of the run, for the plot. */
struct rmq_bench_point {
	double t;                      /* seconds since publishing started (negative: set-up) */
	double sent_rate, recv_rate;
	double p50_us, p99_us;
};

struct rmq_lat_summary {
	uint64_t count;
	double p50, p90, p99, p999, max, mean; /* microseconds */
};

struct rmq_bench_report {
	const struct rmq_bench_opts *o;
	double measured_s;
	/* whole run (loss accounting covers every message, warm-up included) */
	uint64_t sent, expected, received, unique, lost, dup, ooo, gaps, foreign, skipped, errors, acked;
	bool expected_known;           /* false for a standalone sub: loss is only the sequence gaps */
	/* measured interval */
	uint64_t sent_window, received_window;
	uint64_t cmd_received, cmd_bytes;    /* fleet, whole run: commands cars got and their PUBLISH bytes */
	double send_rate, recv_rate, offered_rate;
	double expected_rate;          /* deliveries owed per second by what was sent in the interval */
	struct rmq_lat_summary lat, ack_lat, connack_lat, cmd_lat;
	/* connections */
	uint64_t clients, conn_ok, conn_refused, conn_failed, conn_dropped, held;
	double conn_rate;              /* conn: CONNACKs per second during the storm */
	/* cost */
	double loader_cpu_s, writes_per_msg, reads_per_msg;
	double broker_cpu_s, broker_cpu_pct, broker_cpu_s_per_million;
	double other_cpu_pct;          /* CPU used by neither loader nor broker: a busy machine skews results */
	bool other_measured;
	uint64_t broker_rss_kb, broker_rss_max_kb;
	bool broker_measured;
	/* series */
	struct rmq_bench_point *points;
	size_t npoints;
	/* verdict */
	int exit_code;
	char verdict[640];
};

void rmq_bench_lat_summary(struct rmq_lat_summary *out, const struct rmq_hist_snap *h);
void rmq_bench_report_print(FILE *f, const struct rmq_bench_report *r);
int rmq_bench_report_json(const char *path, const struct rmq_bench_report *r);
/* Writes PATH.dat and PATH.gp; runs gnuplot when installed. Returns 0, -ENOENT when gnuplot is missing
 * (the data files are still written), or another negative errno. */
int rmq_bench_report_plot(const char *path, const struct rmq_bench_report *r);
const char *rmq_bench_mode_name(int mode);

#endif
