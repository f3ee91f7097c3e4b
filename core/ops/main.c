/* ringmq entry point: options, start-up probe, listeners, bridge, reactor threads, signal-driven stop.
 * Runs on the main thread; the reactors run rmq_core_run on their own threads. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ringmq/clock.h"
#include "index/msg.h"
#include "io/reactor.h"
#include "io/xport.h"
#include "mqtt/mqtt.h"
#include "ops/metrics.h"
#include "ringmq/bridge.h"
#include "store/persist.h"
#include "ops/io_hooks.h"
#include "ops/manpage.h"
#include "ops/notify.h"
#include "ops/sys_topics.h"
#include "ops/version.h"

/* Per-pair queue depth: deep enough to absorb a burst between two loop iterations of the receiver. */
#define XQ_CAPACITY 16384
/* Slow consumer bound: staged output beyond this disconnects the client (counted). */
#define OUT_LIMIT_MIN (8u << 20)
#define LISTEN_BACKLOG 4096

static int open_listener(struct rmq_listen_addr *a, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	bool v6 = rmq_listen_sockaddr(a, &ss, &sl);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One listener per core on the same port: the kernel spreads new connections across them. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (v6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl)) {
		snprintf(err, errlen, "listen %s%s%s:%u: %s", v6 ? "[" : "", a->host, v6 ? "]" : "", a->port,
			 strerror(errno));
		close(fd);
		return -1;
	}
	if (a->port == 0) {
		/* Ephemeral port: every other core's listener must share the one the kernel picked. */
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		a->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
	}
	return fd;
}

static void *core_thread(void *arg)
{
	struct core *c = arg;
	if (rmq_core_run(c)) {
		atomic_store(&c->b->failed, 1);
		kill(getpid(), SIGTERM);
	}
	return NULL;
}

/* After every reactor stopped: release what is still queued between cores. */
static void drain_queues(struct broker *b)
{
	struct rmq_xq_entry e;
	for (int i = 0; i < b->ncores * b->ncores; i++) {
		while (rmq_xq_pop(&b->xq[i], &e, 1) == 1) {
			if (e.kind == XK_PUBLISH || e.kind == XK_RETAIN) {
				rmq_msg_unref(e.ptr);
			} else if (e.kind == XK_HANDOFF) {
				close(((struct handoff *)e.ptr)->fd);
				rmq_xport_free(((struct handoff *)e.ptr)->xp);
				free(((struct handoff *)e.ptr)->peer);
				free(e.ptr);
			}
		}
		rmq_xq_destroy(&b->xq[i]);
	}
	for (int i = 0; i < b->ncores; i++)
		rmq_mqtt_core_free(&b->cores[i]);  /* its route updates: no queue names them any more */
}

static int start(struct broker *b, char *err, size_t errlen)
{
	int n = b->ncores;
	b->nlisten_fds = b->cfg.nlisten;
	b->listen_fds = calloc((size_t)n * (size_t)b->cfg.nlisten, sizeof(int));
	b->cores = calloc((size_t)n, sizeof(*b->cores));
	b->xq = calloc((size_t)n * (size_t)n, sizeof(*b->xq));
	if (!b->listen_fds || !b->cores || !b->xq) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int i = 0; i < n * b->cfg.nlisten; i++)
		b->listen_fds[i] = -1;
	for (int k = 0; k < n; k++)
		for (int i = 0; i < b->cfg.nlisten; i++)
			if ((b->listen_fds[k * b->cfg.nlisten + i] = open_listener(&b->cfg.listen[i], err, errlen)) < 0)
				return -1;
	for (int i = 0; i < n * n; i++)
		if (rmq_xq_init(&b->xq[i], XQ_CAPACITY)) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	rmq_core_tls_init(b);  /* each core's own reference to the TLS context (SIGHUP swaps them) */
	if (rmq_sys_new(&b->cores[0])) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (int k = 0; k < n; k++) {
		b->cores[k].id = k;
		b->cores[k].b = b;
		b->cores[k].proto = &rmq_mqtt_proto;
		b->cores[k].store_hooks = &rmq_mqtt_store_hooks;
		b->cores[k].io_hooks = &rmq_ops_io_hooks;
		b->cores[k].efd = eventfd(0, EFD_CLOEXEC);
		if (b->cores[k].efd < 0) {
			snprintf(err, errlen, "eventfd: %s", strerror(errno));
			return -1;
		}
	}
	return 0;
}

static void cleanup(struct broker *b, int started)
{
	rmq_metrics_stop(b);  /* it reads b->cores */
	for (int k = 0; k < started; k++)
		pthread_join(b->cores[k].thread, NULL);
	if (b->xq)
		drain_queues(b);
	for (int i = 0; b->listen_fds && i < b->ncores * b->cfg.nlisten; i++)
		if (b->listen_fds[i] >= 0)
			close(b->listen_fds[i]);
	for (int k = 0; b->cores && k < b->ncores; k++)
		if (b->cores[k].efd > 0)
			close(b->cores[k].efd);
	if (b->bridge)
		rmq_bridge_stop(b->bridge, 5000);
	rmq_core_tls_free(b);  /* the reactors have stopped */
	free(b->listen_fds);
	if (b->cores)
		rmq_sys_free(&b->cores[0]);
	free(b->cores);
	free(b->xq);
	rmq_security_free(b->sec);
	rmq_tls_ctx_free(b->tls);
}

/* SIGHUP: connections stay; new logins and every later ACL check use the new files, new TLS connections the
 * new certificate, key and CA file. A bad file keeps the old ones (and says why, one line). */
static void reload_security(struct broker *b)
{
	char tls_err[512] = "";
	if (b->tls) {
		if (rmq_tls_reload(b, tls_err, sizeof(tls_err)))
			fprintf(stderr, "ringmq: TLS reload failed, keeping the previous certificate: %s\n", tls_err);
		else
			fprintf(stderr, "ringmq: reloaded TLS certificate, key and CA file (new connections)\n");
	}
	char err[512] = "";
	if (rmq_security_reload(b->sec, &b->cfg.sec, rmq_clock_mono_ms(), err, sizeof(err)))
		fprintf(stderr, "ringmq: reload failed, keeping the previous files: %s\n", err);
	else
		fprintf(stderr, "ringmq: reloaded password and ACL files\n");
}

/* Exit codes: EXIT_USAGE for a bad flag, key or value (one line names it), EXIT_FAILURE when start-up fails. */
#define EXIT_USAGE 2

/* --help, --version, --help-man: print, then 0 (EXIT_FAILURE when stdout fails: a build writing ringmq.1 must
 * notice). */
static int info(struct broker *b, int what)
{
	if (what == RMQ_CONFIG_VERSION) {
		rmq_config_finish(&b->cfg);
		rmq_version_print(stdout, b);
	} else if (what == RMQ_CONFIG_HELP_MAN) {
		if (rmq_manpage_write(stdout, rmq_version_string()))
			return EXIT_FAILURE;
	} else {
		rmq_config_usage(stdout);
	}
	return fflush(stdout) || ferror(stdout) ? EXIT_FAILURE : 0;
}

/* Main's life once the broker runs: SIGHUP reloads, SIGTERM/SIGINT stop; in between, systemd hears how we are. */
static void serve_signals(struct broker *b, const sigset_t *set, struct rmq_notify *n)
{
	for (;;) {
		int ms = rmq_notify_period_ms(n);
		struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
		int sig = n->fd >= 0 ? sigtimedwait(set, NULL, &ts) : sigwaitinfo(set, NULL);
		if (sig == SIGHUP) {
			rmq_notify_send(n, "RELOADING=1");
			reload_security(b);
			rmq_notify_send(n, "READY=1");
		} else if (sig > 0) {
			return;
		}
		rmq_notify_tick(n, b, rmq_clock_mono_ms());
	}
}

/* Options and everything that must be right before a socket opens. 0 to go on, -1 to exit 0 (--help, --version),
 * or the exit code, with err filled. */
static int configure(struct broker *b, struct rmq_bridge_cfg *bcfg, int argc, char **argv, char *err,
		     size_t errlen)
{
	int rc = rmq_config_parse_args(&b->cfg, bcfg, argc, argv, err, errlen);
	if (rc > 0)
		return info(b, rc) ? EXIT_FAILURE : -1;
	if (rc < 0)
		return EXIT_USAGE;
	rmq_config_finish(&b->cfg);
	if (rmq_config_check(&b->cfg, err, errlen))
		return EXIT_USAGE;
	/* A data dir's sessions are hashed to the cores it was written with: without an explicit --cores, adopt
	 * that count rather than refuse to start after an upgrade or on a machine with other CPUs. */
	if (b->cfg.data_dir[0] && b->cfg.cores_default) {
		int old = rmq_persist_meta_cores(b->cfg.data_dir, err, errlen);
		if (old < 0)
			return EXIT_FAILURE;
		if (old > 0 && old != b->cfg.cores) {
			b->cfg.cores = old > RMQ_MAX_CORES ? RMQ_MAX_CORES : old;
			b->cfg.cores_from_data_dir = true;
		}
	}
	b->ncores = b->cfg.cores;
	if (b->cfg.data_dir[0] && rmq_persist_meta_check(b->cfg.data_dir, b->ncores, err, errlen))
		return EXIT_FAILURE;
	b->out_limit = b->cfg.max_packet_size * 2 > OUT_LIMIT_MIN ? b->cfg.max_packet_size * 2 : OUT_LIMIT_MIN;
	/* Password and ACL files before anything listens: a typo must stop start-up, not open the broker. */
	if (rmq_security_load_cfg(b->sec, &b->cfg.sec, b->cfg.require_certificate, err, errlen))
		return EXIT_FAILURE;
	/* One TLS context for every core and TLS/WSS listener: OpenSSL contexts are shareable. */
	if (rmq_config_has_tls(&b->cfg)) {
		char tls_err[400] = "";
		b->tls = rmq_tls_ctx_new(b->cfg.tls_cert, b->cfg.tls_key, b->cfg.tls_cafile[0] ? b->cfg.tls_cafile : NULL,
					 b->cfg.require_certificate, tls_err, sizeof(tls_err));
		if (!b->tls) {
			snprintf(err, errlen, "tls: %s", tls_err);
			return EXIT_FAILURE;
		}
	}
	if (rmq_probe(b, err, errlen))
		return EXIT_FAILURE;
	return 0;
}

/* The bridge's options that main derives: the default node id, and where a returning node resumes its group. */
static void bridge_defaults(struct broker *b, struct rmq_bridge_cfg *bcfg)
{
	char err[512] = "";
	/* --cluster-topic names this node HOST:PORT (first listener) unless --node-id is given. */
	char host[256] = "ringmq", node[300];
	gethostname(host, sizeof(host) - 1);
	snprintf(node, sizeof(node), "%s:%u", host, b->cfg.nlisten ? b->cfg.listen[0].port : 0);
	if (rmq_bridge_option(bcfg, "node-id-default", node, err, sizeof(err)))
		fprintf(stderr, "ringmq: %s (give --node-id)\n", err);
	/* --data-dir: sessions outlive the process, so the node resumes its cluster group where it stopped; only
	 * what predates the data dir itself (its meta file, written once) is history no session asked for. */
	struct stat mst;
	char meta[sizeof(b->cfg.data_dir) + 8], since[32];
	snprintf(meta, sizeof(meta), "%s/meta", b->cfg.data_dir);
	if (b->cfg.data_dir[0] && stat(meta, &mst) == 0) {
		snprintf(since, sizeof(since), "%lld",
			 (long long)mst.st_mtim.tv_sec * 1000 + mst.st_mtim.tv_nsec / 1000000);
		if (rmq_bridge_option(bcfg, "cluster-resume-since", since, err, sizeof(err)))
			fprintf(stderr, "ringmq: %s\n", err);
	}
}

static void print_ready(const struct broker *b)
{
	for (int i = 0; i < b->cfg.nlisten; i++) {
		bool v6 = strchr(b->cfg.listen[i].host, ':') != NULL;
		static const char *const kinds[] = {"", " tls", " ws", " wss"};
		printf("ringmq: listening on %s%s%s:%u%s (%d cores%s)\n", v6 ? "[" : "", b->cfg.listen[i].host,
		       v6 ? "]" : "", b->cfg.listen[i].port, kinds[b->cfg.listen[i].kind & 3], b->ncores,
		       b->cfg.cores_from_data_dir ? ": as --data-dir was written with; --cores N to change"
		       : b->cfg.cores_default   ? ": the CPUs in the affinity mask; --cores N to change"
						: "");
	}
	if (b->cfg.metrics_on)
		printf("ringmq: metrics on http://%s%s%s:%u/metrics\n", strchr(b->cfg.metrics.host, ':') ? "[" : "",
		       b->cfg.metrics.host, strchr(b->cfg.metrics.host, ':') ? "]" : "", b->cfg.metrics.port);
	fflush(stdout);
}

/* Starts the reactors, opens the listeners, serves until SIGTERM/SIGINT (SIGHUP reloads), then tells every
 * started core to stop. Returns how many core threads were started (cleanup joins them). */
static int serve(struct broker *b, const sigset_t *set, struct rmq_notify *notify)
{
	int started = 0;
	for (; started < b->ncores; started++)
		if (pthread_create(&b->cores[started].thread, NULL, core_thread, &b->cores[started])) {
			fprintf(stderr, "ringmq: cannot start core %d: %s\n", started, strerror(errno));
			atomic_store(&b->failed, 1);
			break;
		}
	while (!atomic_load(&b->failed) && atomic_load(&b->ready) < started)
		usleep(1000);
	/* listen() only now, right before the ready line: whoever sees the port in LISTEN state also
	 * finds the line, and the Kafka start-up above is not mistaken for readiness. */
	for (int i = 0; !atomic_load(&b->failed) && i < b->ncores * b->cfg.nlisten; i++)
		if (listen(b->listen_fds[i], LISTEN_BACKLOG)) {
			fprintf(stderr, "ringmq: listen: %s\n", strerror(errno));
			atomic_store(&b->failed, 1);
		}
	atomic_store(&b->go, 1);
	if (!atomic_load(&b->failed)) {
		print_ready(b);
		/* Every listener listens and every core's producer exists: systemd may start what needs us. */
		rmq_notify_send(notify, "READY=1");
		rmq_notify_tick(notify, b, rmq_clock_mono_ms());
		serve_signals(b, set, notify);
		rmq_notify_send(notify, "STOPPING=1\nSTATUS=draining: DISCONNECT to clients, flushing Kafka");
	}
	for (int k = 0; k < started; k++) {
		atomic_store(&b->cores[k].stop, true);
		uint64_t one = 1;
		if (write(b->cores[k].efd, &one, sizeof(one)) < 0)
			perror("ringmq: eventfd");
	}
	return started;
}

int main(int argc, char **argv)
{
	static struct broker b;
	static struct rmq_security sec;  /* the security room's state, reached by every core through b.sec */
	b.sec = &sec;
	char err[512] = "";
	int code = EXIT_FAILURE, started = 0;
	struct rmq_notify notify = {.fd = -1};
	/* Signals go to main only (sigwait): blocked before any thread exists (librdkafka starts its own
	 * in rmq_bridge_start), so every thread inherits the mask. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);   /* reloads the password and ACL files and the TLS certificate */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	rmq_config_defaults(&b.cfg);
	struct rmq_bridge_cfg *bcfg = rmq_bridge_cfg_new();
	if (!bcfg) {
		snprintf(err, sizeof(err), "out of memory");
		goto out;
	}
	int rc = configure(&b, bcfg, argc, argv, err, sizeof(err));
	if (rc) {
		code = rc < 0 ? EXIT_SUCCESS : rc;
		goto out;
	}
	if (rmq_notify_open(&notify, err, sizeof(err)) || start(&b, err, sizeof(err)))
		goto out;
	bridge_defaults(&b, bcfg);
	rc = rmq_bridge_start(&b.bridge, bcfg, b.ncores);
	if (rc) {
		snprintf(err, sizeof(err), "kafka bridge: %s", strerror(-rc));
		b.bridge = NULL;
		goto out;
	}
	/* The metrics thread reads the bridge (cluster counters): started once it is built, so that its creation
	 * orders every write of the start-up before its first scrape. */
	if (rmq_metrics_start(&b, err, sizeof(err)))
		goto out;
	started = serve(&b, &set, &notify);
	code = atomic_load(&b.failed) ? EXIT_FAILURE : EXIT_SUCCESS;
out:
	if (err[0])
		fprintf(stderr, "ringmq: %s\n", err);
	cleanup(&b, started);
	rmq_notify_close(&notify);
	rmq_bridge_cfg_free(bcfg);
	return code;
}
