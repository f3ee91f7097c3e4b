/* ringmq-bench entry point: parses flags, starts the workers, walks the phases (connect, warm-up, measure,
 * drain, stop) on a bounded clock, prints progress and the final report. Main thread only. */
#include "bench.h"
#include "report.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "kafka_verify.h"
#include "tls_client.h"

/* How often main wakes to check the clock, a fatal worker error or Ctrl-C. */
#define TICK_NS (50ull * 1000 * 1000)
/* File descriptors besides the connections: epolls, stdio, /proc readers. */
#define SPARE_FDS 64

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull), .tv_nsec = (long)(ns % 1000000000ull)};
	nanosleep(&ts, NULL);
}

static int resolve(struct rmq_bench_run *run, const struct rmq_bench_opts *o)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC}, *res;
	char port[8];
	snprintf(port, sizeof(port), "%u", o->port);
	int rc = getaddrinfo(o->host, port, &hints, &res);
	if (rc) {
		fprintf(stderr, "ringmq-bench: --host %s: %s\n", o->host, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(&run->addr, res->ai_addr, res->ai_addrlen);
	run->addrlen = res->ai_addrlen;
	freeaddrinfo(res);
	if (o->src_addrs && run->addr.ss_family != AF_INET) {
		fprintf(stderr, "ringmq-bench: --source-addrs binds 127.0.0.x: needs an IPv4 --host\n");
		return -EINVAL;
	}
	return 0;
}

/* Every connection is a descriptor: raise the soft limit to the hard one, or say clearly why not. */
static int ensure_fds(uint32_t clients)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return -errno;
	rlim_t need = (rlim_t)clients + SPARE_FDS;
	if (rl.rlim_cur < need && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max < need ? rl.rlim_max : need;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need) {
		fprintf(stderr, "ringmq-bench: %u clients need %llu file descriptors but the limit is %llu "
			"(raise it: ulimit -n, or LimitNOFILE)\n", clients, (unsigned long long)need,
			(unsigned long long)rl.rlim_cur);
		return -EMFILE;
	}
	return 0;
}

static uint32_t random_run_id(void)
{
	uint32_t id = 0;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint32_t)getpid() ^ (uint32_t)time(NULL);
	return id ? id : 1;
}

static const char *si(double v, char *buf, size_t cap)
{
	if (v >= 1e6)
		snprintf(buf, cap, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, cap, "%.1fk", v / 1e3);
	else
		snprintf(buf, cap, "%.0f", v);
	return buf;
}

/* The per-second line on stderr: rates over the last second, p99 over the run so far. */
static void progress(const struct rmq_bench_opts *o, const char *phase, double t, const struct rmq_bench_snap *now,
		     const struct rmq_bench_snap *prev)
{
	if (o->quiet)
		return;
	double dt = (double)(now->t_ns - prev->t_ns) / 1e9;
	if (dt <= 0)
		return;
	char a[16], b[16];
	if (o->mode == RMQ_BENCH_CONN) {
		fprintf(stderr, "[%6.1fs %-7s] connected %llu (+%s/s) refused %llu failed %llu dropped %llu "
			"p99 CONNACK %.2f ms\n", t, phase, (unsigned long long)now->conn_ok,
			si((double)(now->conn_ok - prev->conn_ok) / dt, a, sizeof(a)),
			(unsigned long long)now->conn_refused, (unsigned long long)now->conn_failed,
			(unsigned long long)now->conn_dropped,
			(double)rmq_bench_hist_percentile(&now->connack_lat, 99) / 1e6);
		return;
	}
	fprintf(stderr, "[%6.1fs %-7s] sent %s/s recv %s/s inflight %llu errors %llu p99 %.2f ms\n", t, phase,
		si((double)(now->sent - prev->sent) / dt, a, sizeof(a)),
		si((double)(now->received - prev->received) / dt, b, sizeof(b)),
		(unsigned long long)now->inflight, (unsigned long long)(now->errors + now->conn_dropped),
		(double)rmq_bench_hist_percentile(&now->lat, 99) / 1e6);
}

struct timeline {
	struct rmq_bench_point *points;
	size_t n, cap;
	struct rmq_bench_snap *last;   /* previous per-second snapshot */
	struct rmq_bench_snap *cur;
	struct rmq_hist_snap *interval;
	uint64_t t0;                   /* publishing start */
	uint64_t rss_max;
};

/* Takes a snapshot and, once a second, records a point and prints the progress line. */
static void timeline_tick(struct timeline *tl, const struct rmq_bench_run *run, const char *phase, bool force)
{
	uint64_t now = rmq_bench_now_ns();
	if (!force && now - tl->last->t_ns < 1000000000ull)
		return;
	rmq_bench_snap_take(tl->cur, run);
	if (tl->cur->broker_rss_kb > tl->rss_max)
		tl->rss_max = tl->cur->broker_rss_kb;
	double t = tl->t0 ? ((double)tl->cur->t_ns - (double)tl->t0) / 1e9 : 0;
	double dt = (double)(tl->cur->t_ns - tl->last->t_ns) / 1e9;
	progress(run->o, phase, t, tl->cur, tl->last);
	if (tl->t0 && dt > 0.2 && tl->n < tl->cap) {
		rmq_bench_hist_snap_diff(tl->interval, &tl->cur->lat, &tl->last->lat);
		tl->points[tl->n++] = (struct rmq_bench_point){
			.t = t,
			.sent_rate = (double)(tl->cur->sent - tl->last->sent) / dt,
			.recv_rate = (double)(tl->cur->received - tl->last->received) / dt,
			.p50_us = (double)rmq_bench_hist_percentile(tl->interval, 50) / 1e3,
			.p99_us = (double)rmq_bench_hist_percentile(tl->interval, 99) / 1e3,
		};
	}
	struct rmq_bench_snap *s = tl->last;
	tl->last = tl->cur;
	tl->cur = s;
}

static bool stop_requested(const struct rmq_bench_run *run)
{
	return interrupted || atomic_load(&run->fatal);
}

/* Waits until every client is connected (and subscribed), a worker fails, or the timeout. */
static int wait_setup(struct rmq_bench_run *run, struct timeline *tl)
{
	const struct rmq_bench_opts *o = run->o;
	uint64_t start = rmq_bench_now_ns();
	/* Pacing the storm takes count / rate seconds before the timeout even starts to matter. */
	double pace = o->connect_rate > 0 ? run->nclients / o->connect_rate : 0;
	uint64_t deadline = start + (uint64_t)((o->connect_timeout + pace) * 1e9);
	struct rmq_bench_snap *s = tl->cur;
	for (;;) {
		rmq_bench_snap_take(s, run);
		uint64_t settled = s->conn_ok + s->conn_refused + s->conn_failed;
		if (o->mode == RMQ_BENCH_CONN ? settled >= run->nclients : s->ready >= run->nclients)
			return 0;
		if (stop_requested(run))
			return -ECONNREFUSED;
		if (rmq_bench_now_ns() > deadline) {
			fprintf(stderr, "ringmq-bench: only %llu of %u clients %s within %.6g s (--connect-timeout)\n",
				(unsigned long long)(o->mode == RMQ_BENCH_CONN ? s->conn_ok : s->ready), run->nclients,
				o->subs || o->mode == RMQ_BENCH_FLEET ? "connected and subscribed" : "connected",
				o->connect_timeout + pace);
			return -ETIMEDOUT;
		}
		timeline_tick(tl, run, "connect", false);
		sleep_ns(TICK_NS / 5);
	}
}

/* Runs the timeline for `secs`, returning early on a stop request. */
static void run_for(struct rmq_bench_run *run, struct timeline *tl, const char *phase, double secs)
{
	uint64_t end = rmq_bench_now_ns() + (uint64_t)(secs * 1e9);
	while (rmq_bench_now_ns() < end && !stop_requested(run)) {
		timeline_tick(tl, run, phase, false);
		/* Every connection gone (the broker died): nothing left to measure. */
		struct rmq_bench_snap *s = tl->cur;
		rmq_bench_snap_take(s, run);
		if (s->ready == 0 && run->nclients) {
			fprintf(stderr, "ringmq-bench: every connection to the broker is gone; stopping\n");
			atomic_store(&run->fatal, 1);
			break;
		}
		uint64_t left = end - rmq_bench_now_ns();
		sleep_ns(left < TICK_NS ? left : TICK_NS);
		if (rmq_bench_now_ns() > end)
			break;
	}
}

/* After publishing stops: wait until every expected copy and every ack arrived, nothing moved for
 * a while (QoS 0 loss never arrives), or --drain expires. */
static void drain(struct rmq_bench_run *run, struct timeline *tl)
{
	const struct rmq_bench_opts *o = run->o;
	uint64_t start = rmq_bench_now_ns(), end = start + (uint64_t)(o->drain * 1e9);
	uint64_t last_rx = UINT64_MAX, last_change = start;
	struct rmq_bench_snap *s = tl->cur;
	while (!interrupted) {
		rmq_bench_snap_take(s, run);
		uint64_t now = s->t_ns;
		uint64_t unique = s->received - s->dup;
		bool all_in = unique >= s->expected && s->inflight == 0;
		if (s->received + s->acked != last_rx) {
			last_rx = s->received + s->acked;
			last_change = now;
		}
		if (all_in || now >= end || s->ready == 0)
			break;
		/* QoS 0 losses never arrive: stop once nothing moved for a while. QoS 1/2 messages must
		 * arrive, so a broker that stalls gets the whole --drain before they count as lost. */
		if (now - last_change > 500000000ull && s->inflight == 0 && o->mode != RMQ_BENCH_SUB &&
		    o->sub_qos == 0)
			break;
		sleep_ns(10000000ull);
	}
}

static void fill_report(struct rmq_bench_report *r, const struct rmq_bench_run *run, const struct rmq_bench_snap *a,
			const struct rmq_bench_snap *b, const struct rmq_bench_snap *end, uint64_t storm_ns)
{
	const struct rmq_bench_opts *o = run->o;
	struct rmq_bench_totals t = {0};
	for (int i = 0; i < run->nworkers; i++)
		rmq_bench_worker_totals(run->workers[i], o, &t);
	r->o = o;
	r->measured_s = (double)(b->t_ns - a->t_ns) / 1e9;
	r->sent = t.sent;
	r->expected = t.expected;
	r->unique = t.unique;
	r->received = end->received;
	r->dup = t.dup;
	r->ooo = t.ooo;
	r->gaps = t.gaps;
	r->expected_known = o->mode == RMQ_BENCH_PUBSUB || o->mode == RMQ_BENCH_FLEET;
	r->lost = r->expected_known && t.expected > t.unique ? t.expected - t.unique : 0;
	r->foreign = end->foreign;
	r->skipped = end->skipped;
	r->errors = end->errors;
	r->acked = end->acked;
	r->sent_window = b->sent - a->sent;
	r->cmd_received = end->cmd_received;
	r->cmd_bytes = end->cmd_bytes;
	r->received_window = b->received - a->received;
	double secs = r->measured_s > 0 ? r->measured_s : 1;
	r->send_rate = (double)r->sent_window / secs;
	r->recv_rate = (double)r->received_window / secs;
	uint32_t pubs = o->mode == RMQ_BENCH_FLEET ? o->cars : o->pubs;
	r->offered_rate = o->rate > 0 ? o->rate * pubs : 0;
	if (o->mode == RMQ_BENCH_FLEET)
		r->offered_rate += o->cmd_rate;
	r->expected_rate = (double)(b->expected - a->expected) / secs;
	struct rmq_hist_snap *h = malloc(sizeof(*h));
	if (h) {
		rmq_bench_hist_snap_diff(h, &b->lat, &a->lat);
		rmq_bench_lat_summary(&r->lat, h);
		rmq_bench_hist_snap_diff(h, &b->ack_lat, &a->ack_lat);
		rmq_bench_lat_summary(&r->ack_lat, h);
		rmq_bench_hist_snap_diff(h, &b->cmd_lat, &a->cmd_lat);
		rmq_bench_lat_summary(&r->cmd_lat, h);
		free(h);
	}
	rmq_bench_lat_summary(&r->connack_lat, &end->connack_lat);
	r->clients = run->nclients;
	r->conn_ok = end->conn_ok;
	r->conn_refused = end->conn_refused;
	r->conn_failed = end->conn_failed;
	r->conn_dropped = end->conn_dropped;
	r->held = b->ready;
	r->conn_rate = storm_ns ? (double)a->conn_ok / ((double)storm_ns / 1e9) : 0;
	r->loader_cpu_s = b->loader_cpu_s - a->loader_cpu_s;
	uint64_t msgs = r->sent_window + r->received_window;
	r->writes_per_msg = msgs ? (double)(b->writes - a->writes) / (double)msgs : 0;
	r->reads_per_msg = msgs ? (double)(b->reads - a->reads) / (double)msgs : 0;
	if (o->broker_pid && a->broker_cpu_s >= 0 && b->broker_cpu_s >= 0) {
		r->broker_measured = true;
		r->broker_cpu_s = b->broker_cpu_s - a->broker_cpu_s;
		r->broker_cpu_pct = 100.0 * r->broker_cpu_s / secs;
		r->broker_rss_kb = b->broker_rss_kb;
		uint64_t delivered = o->mode == RMQ_BENCH_PUB ? r->sent_window : r->received_window;
		r->broker_cpu_s_per_million = delivered ? r->broker_cpu_s / ((double)delivered / 1e6) : 0;
	}
	if (a->machine_busy_s >= 0 && b->machine_busy_s >= 0) {
		double other = b->machine_busy_s - a->machine_busy_s - r->loader_cpu_s -
			       (r->broker_measured ? r->broker_cpu_s : 0);
		r->other_measured = o->mode != RMQ_BENCH_CONN;
		r->other_cpu_pct = other > 0 ? 100.0 * other / secs : 0;
	}
}

static const char *first_error(const struct rmq_bench_run *run)
{
	for (int i = 0; i < run->nworkers; i++)
		if (run->workers[i] && rmq_bench_worker_error(run->workers[i])[0])
			return rmq_bench_worker_error(run->workers[i]);
	return "";
}

static void verdict(struct rmq_bench_report *r, const struct rmq_bench_run *run, int setup_rc)
{
	const struct rmq_bench_opts *o = r->o;
	const char *why = first_error(run);
	r->exit_code = 0;
	snprintf(r->verdict, sizeof(r->verdict), "ok");
	if (setup_rc) {
		r->exit_code = 1;
		snprintf(r->verdict, sizeof(r->verdict), "FAILED: not every client could connect%s%s%s",
			 o->subs || o->mode == RMQ_BENCH_FLEET ? " and subscribe" : "", why[0] ? "; first error: " : "",
			 why);
	} else if (r->conn_dropped && o->mode != RMQ_BENCH_CONN) {
		r->exit_code = 1;
		snprintf(r->verdict, sizeof(r->verdict), "FAILED: the broker dropped %llu connection%s during the run%s%s",
			 (unsigned long long)r->conn_dropped, r->conn_dropped == 1 ? "" : "s",
			 why[0] ? "; first error: " : "", why);
	} else if (o->mode != RMQ_BENCH_CONN && o->qos && r->expected_known && r->lost) {
		r->exit_code = 1;
		snprintf(r->verdict, sizeof(r->verdict), "FAILED: %llu QoS %u messages lost (not delivered "
			 "within --drain %.6g s after publishing stopped)", (unsigned long long)r->lost, o->qos, o->drain);
	} else if (interrupted) {
		r->exit_code = 1;
		snprintf(r->verdict, sizeof(r->verdict), "interrupted");
	} else if (o->mode != RMQ_BENCH_CONN && r->expected_known && r->expected &&
		   (double)r->lost > 0.005 * (double)r->expected) {
		snprintf(r->verdict, sizeof(r->verdict), "DEGRADED: %.2f %% of the QoS 0 messages lost (the broker "
			 "or the loader could not keep up)", 100.0 * (double)r->lost / (double)r->expected);
	} else if (r->expected_rate > 0 && r->recv_rate < 0.95 * r->expected_rate) {
		snprintf(r->verdict, sizeof(r->verdict), "DEGRADED: delivered %.0f of %.0f msg/s due in the interval: "
			 "the backlog grows (see the latency)", r->recv_rate, r->expected_rate);
	} else if (r->offered_rate > 0 && r->send_rate < 0.95 * r->offered_rate) {
		snprintf(r->verdict, sizeof(r->verdict), "ok, but the offered rate was not reached (%.0f of %.0f msg/s): "
			 "the loader or the broker could not keep up", r->send_rate, r->offered_rate);
	}
}

int main(int argc, char **argv)
{
	struct rmq_bench_opts o;
	char err[256];
	int rc = rmq_bench_opts_parse(argc, argv, &o, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc) {
		fprintf(stderr, "ringmq-bench: %s\n", err);
		return 2;
	}
	if (o.mode == RMQ_BENCH_KAFKA_VERIFY)
		return rmq_bench_kafka_verify(&o);
	if (o.broker_pid) {
		double cpu;
		if (rmq_bench_proc_cpu(o.broker_pid, &cpu)) {
			fprintf(stderr, "ringmq-bench: --broker-pid %d: no such process (or /proc unreadable)\n",
				o.broker_pid);
			return 2;
		}
	}
	if (o.mode != RMQ_BENCH_SUB && !o.run_id)
		o.run_id = random_run_id();

	struct rmq_bench_run run;
	memset(&run, 0, sizeof(run));
	run.o = &o;
	run.nclients = rmq_bench_client_count(&o);
	run.nworkers = o.threads;
	if (resolve(&run, &o) || ensure_fds(run.nclients))
		return 2;
	if (o.tls_cafile[0]) {
		char err[256];
		if (!(run.tls_ctx = rmq_bench_tls_ctx_new(o.tls_cafile, err, sizeof(err)))) {
			fprintf(stderr, "ringmq-bench: %s\n", err);
			return 2;
		}
	}
	uint64_t *fanout = calloc(run.nclients ? run.nclients : 1, sizeof(*fanout));
	uint64_t *load = calloc(run.nclients ? run.nclients : 1, sizeof(*load));
	uint32_t *worker_of = calloc(run.nclients ? run.nclients : 1, sizeof(*worker_of));
	run.workers = calloc((size_t)run.nworkers, sizeof(*run.workers));
	struct timeline tl = {0};
	struct rmq_bench_snap *snaps = calloc(5, sizeof(*snaps));
	tl.cap = (size_t)(o.warmup + o.duration + o.drain) + 8;
	tl.points = calloc(tl.cap, sizeof(*tl.points));
	tl.interval = malloc(sizeof(*tl.interval));
	if (!fanout || !load || !worker_of || !run.workers || !snaps || !tl.points || !tl.interval) {
		fprintf(stderr, "ringmq-bench: out of memory\n");
		return 1;
	}
	for (uint32_t i = 0; i < run.nclients; i++) {
		fanout[i] = rmq_bench_fanout(&o, i);
		load[i] = rmq_bench_fanin(&o, i);
	}
	if (rmq_bench_assign(load, run.nclients, run.nworkers, worker_of)) {
		fprintf(stderr, "ringmq-bench: out of memory\n");
		return 1;
	}
	free(load);
	run.fanout = fanout;
	run.worker_of = worker_of;
	struct rmq_bench_snap *a = &snaps[0], *b = &snaps[1], *end = &snaps[2];
	tl.last = &snaps[3];
	tl.cur = &snaps[4];

	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int started = 0;
	for (int i = 0; i < run.nworkers; i++) {
		run.workers[i] = rmq_bench_worker_new(&run, i);
		if (!run.workers[i] || rmq_bench_worker_start(run.workers[i])) {
			fprintf(stderr, "ringmq-bench: cannot start worker thread %d\n", i);
			atomic_store(&run.phase, PH_STOP);
			break;
		}
		started++;
	}
	int setup_rc = -ECANCELED;
	uint64_t storm_ns = 0;
	if (started == run.nworkers) {
		uint64_t t_setup = rmq_bench_now_ns();
		rmq_bench_snap_take(tl.last, &run);
		setup_rc = wait_setup(&run, &tl);
		storm_ns = rmq_bench_now_ns() - t_setup;
	}
	rmq_bench_snap_take(a, &run);
	*b = *a;
	if (!setup_rc) {
		run.run_start_ns = rmq_bench_now_ns();
		tl.t0 = run.run_start_ns;
		atomic_store(&run.phase, PH_RUN);
		rmq_bench_snap_take(tl.last, &run);
		if (o.mode != RMQ_BENCH_CONN)
			run_for(&run, &tl, "warm-up", o.warmup);
		rmq_bench_snap_take(a, &run);
		run_for(&run, &tl, o.mode == RMQ_BENCH_CONN ? "hold" : "measure", o.duration);
		rmq_bench_snap_take(b, &run);
		timeline_tick(&tl, &run, "measure", true);
		atomic_store(&run.phase, PH_DRAIN);
		if (o.mode != RMQ_BENCH_CONN)
			drain(&run, &tl);
	}
	rmq_bench_snap_take(end, &run);
	atomic_store(&run.phase, PH_STOP);
	for (int i = 0; i < started; i++)
		rmq_bench_worker_join(run.workers[i]);

	struct rmq_bench_report r;
	memset(&r, 0, sizeof(r));
	fill_report(&r, &run, a, b, end, storm_ns);
	r.broker_rss_max_kb = tl.rss_max > r.broker_rss_kb ? tl.rss_max : r.broker_rss_kb;
	r.points = tl.points;
	r.npoints = tl.n;
	verdict(&r, &run, setup_rc);
	rmq_bench_report_print(stdout, &r);
	fflush(stdout);
	if (o.json[0] && (rc = rmq_bench_report_json(o.json, &r))) {
		fprintf(stderr, "ringmq-bench: --json %s: %s\n", o.json, strerror(-rc));
		r.exit_code = r.exit_code ? r.exit_code : 1;
	}
	if (o.plot[0]) {
		rc = rmq_bench_report_plot(o.plot, &r);
		if (rc == -ENOENT)
			fprintf(stderr, "ringmq-bench: --plot: gnuplot is not installed (Debian package gnuplot-nox); "
				"wrote %s.dat and %s.gp to plot later\n", o.plot, o.plot);
		else if (rc)
			fprintf(stderr, "ringmq-bench: --plot %s: %s\n", o.plot, strerror(-rc));
	}
	for (int i = 0; i < run.nworkers; i++)
		rmq_bench_worker_free(run.workers[i]);
	free(run.workers);
	free(fanout);
	free(worker_of);
	free(snaps);
	free(tl.points);
	free(tl.interval);
	rmq_bench_tls_ctx_free(run.tls_ctx);
	return r.exit_code;
}
