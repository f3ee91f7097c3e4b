/* ringmq-kafka-mock: librdkafka's mock Kafka cluster as a standalone process, with fault commands on stdin,
 * for tests, demos and users who want a Kafka without Java. Single-threaded main loop (the cluster has its own).
 *
 *   ringmq-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...
 * prints `kafka: mock cluster at HOST:PORT,...` and runs until SIGTERM/SIGINT or end of stdin. Commands, one a
 * line, each answered by `ok` or `error: ...`:
 *   down BROKER | up BROKER | rtt BROKER MS | error produce|fetch|metadata N ERRNAME | topic NAME PARTITIONS
 *   bootstrap | help */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "../bridge/bridge_internal.h"

#define MAX_ERRS 1000       /* errors pushed by one command: enough for any test, bounded */
#define LINE_MAX_LEN 1024

static const char usage[] =
	"usage: ringmq-kafka-mock [--brokers N] [--topic NAME:PARTITIONS]...\n"
	"commands on stdin (answer: ok, or error: ...):\n"
	"  down BROKER                take broker BROKER (1..N) down\n"
	"  up BROKER                  bring it back\n"
	"  rtt BROKER MS              add MS of round-trip latency to BROKER\n"
	"  error produce N ERRNAME    fail the next N Produce requests with ERRNAME (also fetch, metadata)\n"
	"  topic NAME PARTITIONS      create a topic\n"
	"  bootstrap                  print the bootstrap servers again\n"
	"  help                       this text\n";

struct mock {
	struct rmq_bridge_mock m;
	int brokers;
};

/* ERRNAME: librdkafka's name with or without RD_KAFKA_RESP_ERR_ (any case), or the numeric code. */
static bool parse_err(const char *s, rd_kafka_resp_err_t *out)
{
	long num;
	if (rmq_bridge_parse_long(s, -200, 1000, &num)) {
		*out = (rd_kafka_resp_err_t)num;
		return true;
	}
	if (strncasecmp(s, "RD_KAFKA_RESP_ERR_", 18) == 0)
		s += 18;
	const struct rd_kafka_err_desc *d;
	size_t n;
	rd_kafka_get_err_descs(&d, &n);
	for (size_t i = 0; i < n; i++)
		if (d[i].name && strcasecmp(d[i].name, s) == 0) {
			*out = d[i].code;
			return true;
		}
	return false;
}

static int16_t api_key(const char *s)
{
	if (strcasecmp(s, "produce") == 0)
		return 0;
	if (strcasecmp(s, "fetch") == 0)
		return 1;
	if (strcasecmp(s, "metadata") == 0)
		return 3;
	return -1;
}

static void cmd_error(struct mock *mk, char **w, int n)
{
	long cnt;
	rd_kafka_resp_err_t e;
	int16_t api = n == 4 ? api_key(w[1]) : -1;
	if (api < 0 || !rmq_bridge_parse_long(w[2], 1, MAX_ERRS, &cnt) || !parse_err(w[3], &e)) {
		printf("error: usage: error produce|fetch|metadata N(1..%d) ERRNAME\n", MAX_ERRS);
		return;
	}
	rd_kafka_resp_err_t errs[MAX_ERRS];
	for (long i = 0; i < cnt; i++)
		errs[i] = e;
	rd_kafka_mock_push_request_errors_array(mk->m.mc, api, (size_t)cnt, errs);
	printf("ok\n");
}

static void cmd_broker(struct mock *mk, char **w, int n)
{
	long id, ms = 0;
	bool rtt = strcmp(w[0], "rtt") == 0;
	if (n != (rtt ? 3 : 2) || !rmq_bridge_parse_long(w[1], 1, mk->brokers, &id) ||
	    (rtt && !rmq_bridge_parse_long(w[2], 0, 3600000, &ms))) {
		printf("error: usage: %s BROKER(1..%d)%s\n", w[0], mk->brokers, rtt ? " MS" : "");
		return;
	}
	rd_kafka_resp_err_t e = rtt ? rd_kafka_mock_broker_set_rtt(mk->m.mc, (int32_t)id, (int)ms)
			      : w[0][0] == 'd' ? rd_kafka_mock_broker_set_down(mk->m.mc, (int32_t)id)
					       : rd_kafka_mock_broker_set_up(mk->m.mc, (int32_t)id);
	if (e)
		printf("error: %s\n", rd_kafka_err2str(e));
	else
		printf("ok\n");
}

static void cmd_topic(struct mock *mk, char **w, int n)
{
	long parts;
	if (n != 3 || !rmq_bridge_kafka_topic_valid(w[1], strlen(w[1])) || !rmq_bridge_parse_long(w[2], 1, 10000, &parts)) {
		printf("error: usage: topic NAME PARTITIONS(1..10000)\n");
		return;
	}
	printf(rmq_bridge_mock_topic(&mk->m, w[1], (int)parts) ? "error: cannot create topic %s\n" : "ok\n", w[1]);
}

static void command(struct mock *mk, char *line)
{
	char *w[8], *save = NULL;
	int n = 0;
	for (char *t = strtok_r(line, " \t\r", &save); t && n < 8; t = strtok_r(NULL, " \t\r", &save))
		w[n++] = t;
	if (n == 0)
		return;
	if (strcmp(w[0], "down") == 0 || strcmp(w[0], "up") == 0 || strcmp(w[0], "rtt") == 0)
		cmd_broker(mk, w, n);
	else if (strcmp(w[0], "error") == 0)
		cmd_error(mk, w, n);
	else if (strcmp(w[0], "topic") == 0)
		cmd_topic(mk, w, n);
	else if (strcmp(w[0], "bootstrap") == 0)
		printf("%s\nok\n", mk->m.bootstraps);
	else if (strcmp(w[0], "help") == 0)
		printf("%sok\n", usage);
	else
		printf("error: unknown command '%s' (try help)\n", w[0]);
	fflush(stdout);
}

/* Reads stdin by line until EOF or a signal. Returns 0. */
static int run(struct mock *mk, int sfd)
{
	char buf[LINE_MAX_LEN];
	size_t used = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].revents)
			return 0; /* SIGTERM or SIGINT */
		if (!p[0].revents)
			continue;
		ssize_t r = read(0, buf + used, sizeof(buf) - 1 - used);
		if (r <= 0)
			return 0; /* end of stdin: the parent went away */
		used += (size_t)r;
		char *nl;
		while ((nl = memchr(buf, '\n', used))) {
			*nl = 0;
			command(mk, buf);
			used -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, used);
		}
		if (used == sizeof(buf) - 1) {
			printf("error: line too long\n");
			fflush(stdout);
			used = 0;
		}
	}
}

static int parse_args(int argc, char **argv, long *brokers)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
			if (!rmq_bridge_parse_long(argv[++i], 1, 32, brokers))
				return fprintf(stderr, "ringmq-kafka-mock: --brokers: expected 1..32\n"), -1;
		} else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
			i++; /* created once the cluster runs */
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(usage, stdout);
			exit(0);
		} else
			return fprintf(stderr, "ringmq-kafka-mock: unknown argument '%s'\n%s", argv[i], usage), -1;
	}
	return 0;
}

static int create_topics(struct mock *mk, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--topic") != 0)
			continue;
		char *spec = argv[++i], *colon = strrchr(spec, ':');
		long parts;
		if (!colon || !rmq_bridge_parse_long(colon + 1, 1, 10000, &parts) ||
		    !rmq_bridge_kafka_topic_valid(spec, (size_t)(colon - spec)))
			return fprintf(stderr, "ringmq-kafka-mock: --topic '%s': expected NAME:PARTITIONS\n", spec), -1;
		*colon = 0;
		if (rmq_bridge_mock_topic(&mk->m, spec, (int)parts))
			return fprintf(stderr, "ringmq-kafka-mock: cannot create topic %s\n", spec), -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	long brokers = 3;
	char err[256];
	struct mock mk = {0};
	if (parse_args(argc, argv, &brokers))
		return 2;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_CLOEXEC);
	if (sfd < 0)
		return perror("ringmq-kafka-mock: signalfd"), 1;
	signal(SIGPIPE, SIG_IGN);
	mk.brokers = (int)brokers;
	if (rmq_bridge_mock_start(&mk.m, mk.brokers, err, sizeof(err)))
		return fprintf(stderr, "ringmq-kafka-mock: %s\n", err), 1;
	int rc = create_topics(&mk, argc, argv);
	if (rc == 0) {
		printf("kafka: mock cluster at %s\n", mk.m.bootstraps);
		fflush(stdout);
		rc = run(&mk, sfd);
	}
	rmq_bridge_mock_stop(&mk.m);
	close(sfd);
	return rc ? 1 : 0;
}
