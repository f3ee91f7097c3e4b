/* The /metrics HTTP server and the status page at /: one listening socket, one thread answering them. Started and
 * stopped by main; the thread touches nothing of the reactors but their published snapshots. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "io/reactor.h"
#include "ops/config.h"
#include "ops/metrics.h"

/* Why a dedicated thread and not an acceptor on core 0's ring: a scrape is a few per minute, blocking I/O
 * on one socket at a time is the simplest correct server, and it keeps HTTP parsing and a ~10 KiB render
 * off every reactor (shared nothing: it reads only the per-core snapshots, see metrics.c). */

/* A scrape's request is one line and a few headers; anything larger is not Prometheus. */
#define REQ_MAX 8192
/* A client that dribbles its request (or does not read the reply) holds the server at most this long. */
#define IO_TIMEOUT_MS 2000
#define METRICS_BACKLOG 16
/* After an error reply the client may still be sending (an oversized request): read and discard up to this
 * much for up to LINGER_MS, else close() would reset the connection and the client could lose the reply. */
#define LINGER_BYTES (64 * 1024)
#define LINGER_MS 200

struct rmq_metrics_srv {
	struct broker *b;
	int lfd, stopfd;
	pthread_t thread;
};

#define CT_TEXT "text/plain; charset=utf-8"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_HTML "text/html; charset=utf-8"
/* The status page may run its inline script and talk to this origin only: nothing is fetched from outside. */
#define PAGE_HEADERS "Cache-Control: no-store\r\nContent-Security-Policy: default-src 'self'; " \
	"script-src 'unsafe-inline'; style-src 'unsafe-inline'\r\n"

static void reply(int fd, const char *status, const char *ctype, const char *extra, const char *body, size_t len)
{
	char head[512];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
			 status, ctype, len, extra ? extra : "");
	struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = body && len ? 2 : 1};
	/* Best effort: a peer that went away only costs it its answer. */
	while (mh.msg_iovlen) {
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL);
		if (w <= 0)
			return;
		while (mh.msg_iovlen && (size_t)w >= mh.msg_iov[0].iov_len) {
			w -= (ssize_t)mh.msg_iov[0].iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + w;
			mh.msg_iov[0].iov_len -= (size_t)w;
		}
	}
}

static void reply_text(int fd, const char *status, const char *extra)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s\n", status);
	reply(fd, status, CT_TEXT, extra, body, (size_t)n);
}

/* Reads the request head (up to the blank line). Returns its length, 0 when the peer sent nothing usable
 * before closing or timing out, -1 when it is larger than REQ_MAX. */
static ssize_t read_head(int fd, char *buf)
{
	size_t len = 0;
	while (len < REQ_MAX) {
		ssize_t r = recv(fd, buf + len, REQ_MAX - len, 0);
		if (r <= 0)
			return 0;
		len += (size_t)r;
		buf[len] = 0;
		if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
			return (ssize_t)len;
	}
	return -1;
}

static void serve_metrics(struct rmq_metrics_srv *s, int fd)
{
	char *body = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&body, &len);
	if (!f) {
		reply_text(fd, "500 Internal Server Error", NULL);
		return;
	}
	rmq_metrics_render(s->b, f);
	if (fclose(f) == 0)
		reply(fd, "200 OK", CT_METRICS, NULL, body, len);
	else
		reply_text(fd, "500 Internal Server Error", NULL);
	free(body);
}

/* One request per connection: answer it, then the caller closes. */
static void serve_one(struct rmq_metrics_srv *s, int fd)
{
	char buf[REQ_MAX + 1];
	ssize_t n = read_head(fd, buf);
	if (n < 0) {
		reply_text(fd, "431 Request Header Fields Too Large", NULL);
		return;
	}
	if (n == 0)
		return;  /* nothing complete arrived: nobody to answer */
	/* Request line: METHOD SP TARGET SP HTTP/1.x */
	char *eol = strpbrk(buf, "\r\n");
	*eol = 0;
	char *sp1 = strchr(buf, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || sp1 == buf || !sp2 || sp2 == sp1 + 1 || sp1[1] != '/' || strncmp(sp2 + 1, "HTTP/1.", 7) ||
	    strchr(sp2 + 1, ' ')) {
		reply_text(fd, "400 Bad Request", NULL);
		return;
	}
	*sp1 = *sp2 = 0;
	char *target = sp1 + 1;
	target[strcspn(target, "?")] = 0;  /* Prometheus may add ?query parameters; none changes the answer */
	bool page = !strcmp(target, "/");
	if (!page && strcmp(target, "/metrics")) {
		reply_text(fd, "404 Not Found", NULL);
		return;
	}
	if (strcmp(buf, "GET")) {
		reply_text(fd, "405 Method Not Allowed", "Allow: GET\r\n");
		return;
	}
	if (page)
		reply(fd, "200 OK", CT_HTML, PAGE_HEADERS, rmq_status_page, rmq_status_page_len);
	else
		serve_metrics(s, fd);
}

static void linger_close(int fd)
{
	struct timeval tv = {0, LINGER_MS * 1000};
	char junk[4096];
	size_t total = 0;
	shutdown(fd, SHUT_WR);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (total < LINGER_BYTES) {
		ssize_t r = recv(fd, junk, sizeof(junk), 0);
		if (r <= 0)
			break;
		total += (size_t)r;
	}
	close(fd);
}

static void *srv_thread(void *arg)
{
	struct rmq_metrics_srv *s = arg;
	struct pollfd p[2] = {{.fd = s->lfd, .events = POLLIN}, {.fd = s->stopfd, .events = POLLIN}};
	struct timeval tv = {IO_TIMEOUT_MS / 1000, (IO_TIMEOUT_MS % 1000) * 1000};
	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		serve_one(s, fd);
		linger_close(fd);
	}
	return NULL;
}

static int open_listener(struct rmq_listen_addr *a, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	bool v6 = rmq_listen_sockaddr(a, &ss, &sl);
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, METRICS_BACKLOG) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		int e = errno;
		snprintf(err, errlen, "metrics %s%s%s:%u: %s", v6 ? "[" : "", a->host, v6 ? "]" : "", a->port,
			 strerror(e));
		if (fd >= 0)
			close(fd);
		return -e;
	}
	a->port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

int rmq_metrics_start(struct broker *b, char *err, size_t errlen)
{
	if (!b->cfg.metrics_on)
		return 0;
	struct rmq_metrics_srv *s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	s->b = b;
	s->lfd = open_listener(&b->cfg.metrics, err, errlen);
	if (s->lfd < 0) {
		int rc = s->lfd;
		free(s);
		return rc;
	}
	s->stopfd = eventfd(0, EFD_CLOEXEC);
	int rc = s->stopfd < 0 ? -errno : -pthread_create(&s->thread, NULL, srv_thread, s);
	if (rc) {
		snprintf(err, errlen, "metrics thread: %s", strerror(-rc));
		if (s->stopfd >= 0)
			close(s->stopfd);
		close(s->lfd);
		free(s);
		return rc;
	}
	b->metrics = s;
	return 0;
}

void rmq_metrics_stop(struct broker *b)
{
	struct rmq_metrics_srv *s = b->metrics;
	if (!s)
		return;
	uint64_t one = 1;
	if (write(s->stopfd, &one, sizeof(one)) < 0)
		perror("ringmq: metrics stop");
	pthread_join(s->thread, NULL);
	close(s->stopfd);
	close(s->lfd);
	free(s);
	b->metrics = NULL;
}
