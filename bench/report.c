/* ringmq-bench report: snapshots of the workers' counters, the broker's CPU and RSS from /proc, the final
 * report as text and JSON, and the gnuplot plot. Main thread only. */
#include "report.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

int rmq_bench_proc_cpu(int pid, double *cpu_s)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command name may hold spaces and parentheses: fields restart after the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -EINVAL;
	unsigned long utime, stime;
	/* state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime */
	if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
		return -EINVAL;
	*cpu_s = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

int rmq_bench_proc_rss(int pid, uint64_t *rss_kb)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	int rc = -EINVAL;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long kb;
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1) {
			*rss_kb = kb;
			rc = 0;
			break;
		}
	}
	fclose(f);
	return rc;
}

int rmq_bench_proc_busy(double *busy_s)
{
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -errno;
	unsigned long long v[8] = {0};
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		       &v[6], &v[7]);
	fclose(f);
	if (n < 5)
		return -EINVAL;
	/* user nice system idle iowait irq softirq steal: everything but idle and iowait is busy. */
	unsigned long long busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
	*busy_s = (double)busy / (double)sysconf(_SC_CLK_TCK);
	return 0;
}

void rmq_bench_snap_take(struct rmq_bench_snap *s, const struct rmq_bench_run *run)
{
	memset(s, 0, offsetof(struct rmq_bench_snap, lat));
	rmq_bench_hist_snap_clear(&s->lat);
	rmq_bench_hist_snap_clear(&s->ack_lat);
	rmq_bench_hist_snap_clear(&s->connack_lat);
	rmq_bench_hist_snap_clear(&s->cmd_lat);
	s->t_ns = rmq_bench_now_ns();
	for (int i = 0; i < run->nworkers; i++) {
		const struct rmq_bench_worker *w = run->workers[i];
		const struct rmq_bench_counters *c = rmq_bench_worker_counters(w);
		s->sent += LD(c->sent);
		s->expected += LD(c->expected);
		s->acked += LD(c->acked);
		s->received += LD(c->received);
		s->dup += LD(c->dup);
		s->ooo += LD(c->ooo);
		s->foreign += LD(c->foreign);
		s->inflight += LD(c->inflight);
		s->skipped += LD(c->skipped);
		s->errors += LD(c->errors);
		s->conn_ok += LD(c->conn_ok);
		s->conn_refused += LD(c->conn_refused);
		s->conn_failed += LD(c->conn_failed);
		s->conn_dropped += LD(c->conn_dropped);
		s->ready += LD(c->ready);
		s->bytes_out += LD(c->bytes_out);
		s->bytes_in += LD(c->bytes_in);
		s->writes += LD(c->writes);
		s->reads += LD(c->reads);
		s->cmd_received += LD(c->cmd_received);
		s->cmd_bytes += LD(c->cmd_bytes);
		rmq_bench_hist_snap_add(&s->lat, rmq_bench_worker_latency(w));
		rmq_bench_hist_snap_add(&s->ack_lat, rmq_bench_worker_ack_latency(w));
		rmq_bench_hist_snap_add(&s->connack_lat, rmq_bench_worker_connack_latency(w));
		rmq_bench_hist_snap_add(&s->cmd_lat, rmq_bench_worker_cmd_latency(w));
	}
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	s->loader_cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
			  ru.ru_stime.tv_usec / 1e6;
	if (rmq_bench_proc_busy(&s->machine_busy_s))
		s->machine_busy_s = -1;
	s->broker_cpu_s = -1;
	int pid = run->o->broker_pid;
	if (pid && rmq_bench_proc_cpu(pid, &s->broker_cpu_s))
		s->broker_cpu_s = -1;
	if (pid && rmq_bench_proc_rss(pid, &s->broker_rss_kb))
		s->broker_rss_kb = 0;
}

void rmq_bench_lat_summary(struct rmq_lat_summary *out, const struct rmq_hist_snap *h)
{
	out->count = h->count;
	out->p50 = (double)rmq_bench_hist_percentile(h, 50) / 1e3;
	out->p90 = (double)rmq_bench_hist_percentile(h, 90) / 1e3;
	out->p99 = (double)rmq_bench_hist_percentile(h, 99) / 1e3;
	out->p999 = (double)rmq_bench_hist_percentile(h, 99.9) / 1e3;
	out->max = h->count ? (double)h->max / 1e3 : 0;
	out->mean = rmq_bench_hist_mean(h) / 1e3;
}

const char *rmq_bench_mode_name(int mode)
{
	switch (mode) {
	case RMQ_BENCH_PUB: return "pub";
	case RMQ_BENCH_SUB: return "sub";
	case RMQ_BENCH_PUBSUB: return "pubsub";
	case RMQ_BENCH_FLEET: return "fleet";
	case RMQ_BENCH_CONN: return "conn";
	case RMQ_BENCH_KAFKA_VERIFY: return "kafka-verify";
	default: return "?";
	}
}

static void print_lat(FILE *f, const char *name, const struct rmq_lat_summary *l)
{
	if (!l->count) {
		fprintf(f, "%-18s none measured\n", name);
		return;
	}
	fprintf(f, "%-18s p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  mean %.1f us  (%llu samples)\n",
		name, l->p50, l->p90, l->p99, l->p999, l->max, l->mean, (unsigned long long)l->count);
}

static void print_params(FILE *f, const struct rmq_bench_opts *o)
{
	fprintf(f, "ringmq-bench %s%s%s against %s:%u, MQTT %s, %d thread%s\n", rmq_bench_mode_name(o->mode),
		o->scenario[0] ? " --scenario " : "", o->scenario, o->host, o->port,
		o->version == 5 ? "5" : "3.1.1", o->threads, o->threads == 1 ? "" : "s");
	switch (o->mode) {
	case RMQ_BENCH_PUB: case RMQ_BENCH_SUB: case RMQ_BENCH_PUBSUB:
		fprintf(f, " ");
		if (o->pubs)
			fprintf(f, " %u publisher%s on '%s' (QoS %u, %u B, ", o->pubs, o->pubs == 1 ? "" : "s", o->topic,
				o->qos, o->size);
		if (o->pubs && o->rate > 0)
			fprintf(f, "%.6g msg/s each, %.6g in all)", o->rate, o->rate * o->pubs);
		else if (o->pubs)
			fprintf(f, "unlimited rate)");
		if (o->subs)
			fprintf(f, "%s%u subscriber%s on '%s' (QoS %u)", o->pubs ? ", " : " ", o->subs,
				o->subs == 1 ? "" : "s", o->filter, o->sub_qos);
		fprintf(f, "\n");
		break;
	case RMQ_BENCH_FLEET:
		fprintf(f, "  %u cars at %.6g Hz to cars/{vin}/telemetry (QoS %u, %u B), %u back-end subscriber%s\n",
			o->cars, o->hz, o->qos, o->size, o->backends, o->backends == 1 ? "" : "s");
		if (o->cmd_rate > 0)
			fprintf(f, "  back-ends send %.6g commands/s in all to cars/{vin}/cmd (QoS %u)\n", o->cmd_rate, o->qos);
		break;
	case RMQ_BENCH_CONN:
		fprintf(f, "  %u connections at %.6g/s, held %.6g s, %u source address%s\n", o->count,
			o->connect_rate, o->hold, o->src_addrs ? o->src_addrs : 1, o->src_addrs > 1 ? "es" : "");
		break;
	default:
		break;
	}
	if (o->mode != RMQ_BENCH_CONN)
		fprintf(f, "  warm-up %.6g s, measured %.6g s, run id %u\n", o->warmup, o->duration, o->run_id);
}

void rmq_bench_report_print(FILE *f, const struct rmq_bench_report *r)
{
	const struct rmq_bench_opts *o = r->o;
	print_params(f, o);
	fprintf(f, "connections        %llu of %llu up, refused %llu, failed %llu, dropped during the run %llu\n",
		(unsigned long long)r->conn_ok, (unsigned long long)r->clients,
		(unsigned long long)r->conn_refused, (unsigned long long)r->conn_failed,
		(unsigned long long)r->conn_dropped);
	if (o->mode == RMQ_BENCH_CONN) {
		fprintf(f, "connection storm   %.0f CONNACK/s, %llu held to the end of --hold\n", r->conn_rate,
			(unsigned long long)r->held);
		print_lat(f, "CONNACK latency", &r->connack_lat);
	} else {
		fprintf(f, "messages           sent %llu, received %llu", (unsigned long long)r->sent,
			(unsigned long long)r->received);
		if (r->expected_known)
			fprintf(f, ", expected %llu, lost %llu (%.3f %%)", (unsigned long long)r->expected,
				(unsigned long long)r->lost,
				r->expected ? 100.0 * (double)r->lost / (double)r->expected : 0.0);
		else if (o->subs)
			fprintf(f, ", lost (sequence gaps) %llu", (unsigned long long)r->gaps);
		fprintf(f, ", duplicated %llu, out of order %llu\n", (unsigned long long)r->dup,
			(unsigned long long)r->ooo);
		if (r->foreign)
			fprintf(f, "foreign            %llu messages without this run's stamp (ignored)\n",
				(unsigned long long)r->foreign);
		fprintf(f, "throughput        ");
		if (o->mode != RMQ_BENCH_SUB)
			fprintf(f, " sent %.0f msg/s%s", r->send_rate, o->mode == RMQ_BENCH_PUB ? "" : ",");
		if (o->mode != RMQ_BENCH_PUB)
			fprintf(f, " received %.0f msg/s", r->recv_rate);
		if (r->offered_rate > 0)
			fprintf(f, " (offered %.0f msg/s)", r->offered_rate);
		fprintf(f, "\n");
		if (r->skipped)
			fprintf(f, "rate shortfall     %llu scheduled sends not made (socket or inflight window full)\n",
				(unsigned long long)r->skipped);
		if (o->qos)
			fprintf(f, "acknowledged       %llu\n", (unsigned long long)r->acked);
		if (o->mode != RMQ_BENCH_PUB)
			print_lat(f, o->mode == RMQ_BENCH_FLEET ? "telemetry latency" : "latency", &r->lat);
		if (o->mode == RMQ_BENCH_FLEET && o->cmd_rate > 0) {
			print_lat(f, "command latency", &r->cmd_lat);
			fprintf(f, "command bytes      %.1f per command on the wire to the car (%llu commands, topic "
				"aliases %s)\n", r->cmd_received ? (double)r->cmd_bytes / (double)r->cmd_received : 0.0,
				(unsigned long long)r->cmd_received, o->topic_alias_max ? "asked for" : "off");
		}
		if (o->qos && o->mode != RMQ_BENCH_SUB)
			print_lat(f, "ack latency", &r->ack_lat);
		print_lat(f, "CONNACK latency", &r->connack_lat);
	}
	fprintf(f, "errors             %llu\n", (unsigned long long)r->errors);
	fprintf(f, "loader             %.2f CPU-s, %.3f writes and %.3f reads per message\n", r->loader_cpu_s,
		r->writes_per_msg, r->reads_per_msg);
	if (r->broker_measured)
		fprintf(f, "broker             pid %d: %.2f CPU-s (%.0f %% of one core), %.2f CPU-s per million "
			"delivered, RSS %llu kB (max %llu kB)\n", o->broker_pid, r->broker_cpu_s, r->broker_cpu_pct,
			r->broker_cpu_s_per_million, (unsigned long long)r->broker_rss_kb,
			(unsigned long long)r->broker_rss_max_kb);
	if (r->other_measured)
		fprintf(f, "machine            other processes used %.0f %% of one core during the measurement%s\n",
			r->other_cpu_pct, r->other_cpu_pct > 20 ? ": the figures are skewed by them" : "");
	fprintf(f, "result             %s\n", r->verdict);
}

static void json_lat(FILE *f, const char *name, const struct rmq_lat_summary *l, bool last)
{
	fprintf(f, "  \"%s\": {\"count\": %llu, \"p50_us\": %.3f, \"p90_us\": %.3f, \"p99_us\": %.3f, "
		"\"p999_us\": %.3f, \"max_us\": %.3f, \"mean_us\": %.3f}%s\n", name, (unsigned long long)l->count,
		l->p50, l->p90, l->p99, l->p999, l->max, l->mean, last ? "" : ",");
}

/* Strings we print come from flags; escape what JSON needs. */
static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

int rmq_bench_report_json(const char *path, const struct rmq_bench_report *r)
{
	const struct rmq_bench_opts *o = r->o;
	FILE *f = fopen(path, "w");
	if (!f)
		return -errno;
#define U(k, v) fprintf(f, "  \"%s\": %llu,\n", k, (unsigned long long)(v))
#define D(k, v) fprintf(f, "  \"%s\": %.6g,\n", k, (double)(v))
	fprintf(f, "{\n  \"mode\": \"%s\",\n  \"scenario\": ", rmq_bench_mode_name(o->mode));
	json_str(f, o->scenario);
	fprintf(f, ",\n  \"host\": ");
	json_str(f, o->host);
	fprintf(f, ",\n  \"topic\": ");
	json_str(f, o->topic);
	fprintf(f, ",\n  \"filter\": ");
	json_str(f, o->filter);
	fprintf(f, ",\n");
	U("port", o->port);
	fprintf(f, "  \"mqtt\": \"%s\",\n", o->version == 5 ? "5" : "3.1.1");
	U("threads", o->threads);
	U("publishers", o->mode == RMQ_BENCH_FLEET ? o->cars : o->pubs);
	U("subscribers", o->mode == RMQ_BENCH_FLEET ? o->backends : o->subs);
	U("qos", o->qos);
	U("run_id", o->run_id);
	U("size", o->size);
	D("rate_per_publisher", o->rate);
	D("warmup_s", o->warmup);
	D("measured_s", r->measured_s);
	U("sent", r->sent);
	U("received", r->received);
	fprintf(f, "  \"expected\": ");
	if (r->expected_known)
		fprintf(f, "%llu,\n  \"lost\": %llu,\n", (unsigned long long)r->expected, (unsigned long long)r->lost);
	else
		fprintf(f, "null,\n  \"lost\": null,\n");
	D("loss_pct", r->expected_known && r->expected ? 100.0 * (double)r->lost / (double)r->expected : 0);
	U("sequence_gaps", r->gaps);
	U("duplicated", r->dup);
	U("out_of_order", r->ooo);
	U("foreign", r->foreign);
	U("acked", r->acked);
	U("skipped", r->skipped);
	U("errors", r->errors);
	U("sent_in_window", r->sent_window);
	U("cmd_received", r->cmd_received);
	U("cmd_bytes", r->cmd_bytes);
	U("received_in_window", r->received_window);
	D("send_rate", r->send_rate);
	D("recv_rate", r->recv_rate);
	D("offered_rate", r->offered_rate);
	D("expected_rate", r->expected_rate);
	json_lat(f, "latency", &r->lat, false);
	json_lat(f, "ack_latency", &r->ack_lat, false);
	json_lat(f, "connack_latency", &r->connack_lat, false);
	json_lat(f, "cmd_latency", &r->cmd_lat, false);
	U("clients", r->clients);
	U("conn_ok", r->conn_ok);
	U("conn_refused", r->conn_refused);
	U("conn_failed", r->conn_failed);
	U("conn_dropped", r->conn_dropped);
	U("conn_held", r->held);
	D("conn_rate", r->conn_rate);
	D("loader_cpu_s", r->loader_cpu_s);
	D("writes_per_msg", r->writes_per_msg);
	D("reads_per_msg", r->reads_per_msg);
	if (r->broker_measured) {
		U("broker_pid", o->broker_pid);
		D("broker_cpu_s", r->broker_cpu_s);
		D("broker_cpu_pct", r->broker_cpu_pct);
		D("broker_cpu_s_per_million", r->broker_cpu_s_per_million);
		U("broker_rss_kb", r->broker_rss_kb);
		U("broker_rss_max_kb", r->broker_rss_max_kb);
	}
	if (r->other_measured)
		D("other_cpu_pct", r->other_cpu_pct);
	fprintf(f, "  \"series\": [");
	for (size_t i = 0; i < r->npoints; i++) {
		const struct rmq_bench_point *p = &r->points[i];
		fprintf(f, "%s\n    {\"t\": %.3f, \"sent_rate\": %.1f, \"recv_rate\": %.1f, \"p50_us\": %.1f, "
			"\"p99_us\": %.1f}", i ? "," : "", p->t, p->sent_rate, p->recv_rate, p->p50_us, p->p99_us);
	}
	fprintf(f, "\n  ],\n");
	U("exit_code", r->exit_code);
	fprintf(f, "  \"result\": ");
	json_str(f, r->verdict);
	fprintf(f, "\n}\n");
#undef U
#undef D
	int rc = ferror(f) ? -EIO : 0;
	if (fclose(f))
		rc = -errno;
	return rc;
}

static bool have_gnuplot(void)
{
	const char *path = getenv("PATH");
	if (!path)
		return false;
	char *dup = strdup(path), *save = NULL;
	bool found = false;
	for (char *d = strtok_r(dup, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char p[1024];
		snprintf(p, sizeof(p), "%s/gnuplot", d);
		found = access(p, X_OK) == 0;
	}
	free(dup);
	return found;
}

int rmq_bench_report_plot(const char *path, const struct rmq_bench_report *r)
{
	char dat[RMQ_BENCH_PATH_MAX + 8], gp[RMQ_BENCH_PATH_MAX + 8];
	snprintf(dat, sizeof(dat), "%s.dat", path);
	snprintf(gp, sizeof(gp), "%s.gp", path);
	FILE *f = fopen(dat, "w");
	if (!f)
		return -errno;
	fprintf(f, "# t_s sent_per_s received_per_s p50_us p99_us\n");
	for (size_t i = 0; i < r->npoints; i++)
		fprintf(f, "%.3f %.1f %.1f %.1f %.1f\n", r->points[i].t, r->points[i].sent_rate,
			r->points[i].recv_rate, r->points[i].p50_us, r->points[i].p99_us);
	if (fclose(f))
		return -errno;
	f = fopen(gp, "w");
	if (!f)
		return -errno;
	fprintf(f, "set terminal svg size 900,600 dynamic\nset output '%s'\nset multiplot layout 2,1\n"
		"set title 'ringmq-bench %s: throughput'\nset ylabel 'msg/s'\nset xlabel 's'\nset grid\n"
		"plot '%s' using 1:2 with lines title 'sent', '' using 1:3 with lines title 'received'\n"
		"set title 'latency'\nset ylabel 'us'\nset logscale y\n"
		"plot '%s' using 1:4 with lines title 'p50', '' using 1:5 with lines title 'p99'\n"
		"unset multiplot\n", path, rmq_bench_mode_name(r->o->mode), dat, dat);
	if (fclose(f))
		return -errno;
	if (!have_gnuplot())
		return -ENOENT;
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execlp("gnuplot", "gnuplot", gp, (char *)NULL);
		_exit(127);
	}
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return -errno;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EIO;
}
