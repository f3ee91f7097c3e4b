/* systemd's service notification protocol (sd_notify) spoken directly: READY/STATUS/WATCHDOG/STOPPING/RELOADING
 * datagrams to $NOTIFY_SOCKET. Main thread only (it reads the cores' published snapshots, never their state). */
#ifndef RMQ_OPS_NOTIFY_H
#define RMQ_OPS_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "ops/config.h"

struct broker;

struct rmq_notify {
	int fd;                         /* -1: not under systemd (no NOTIFY_SOCKET), every call is a no-op */
	struct sockaddr_un addr;        /* $NOTIFY_SOCKET */
	socklen_t addr_len;
	uint64_t watchdog_us;           /* WATCHDOG_USEC for this pid; 0: no watchdog */
	uint64_t last_ping_ms, last_status_ms;
	uint64_t ticks_at_ping[RMQ_MAX_CORES];  /* each core's loop ticks when the last WATCHDOG=1 went out */
	uint64_t msgs_prev, out_prev, kafka_prev;  /* totals at the last STATUS=, for rates */
	int stalled_logged;             /* core id + 1 of the stall already logged; 0: none */
};

/* Reads NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID from the environment and opens the socket. Returns 0 (also
 * when not under systemd) or -errno with err filled when NOTIFY_SOCKET is set but unusable. */
int rmq_notify_open(struct rmq_notify *n, char *err, size_t errlen);
void rmq_notify_close(struct rmq_notify *n);

/* Sends one notification ("READY=1", "STOPPING=1", "STATUS=..." or several joined by '\n'). 0 or -errno. */
int rmq_notify_send(struct rmq_notify *n, const char *msg);

/* How long main may wait (ms) before rmq_notify_tick is due. */
int rmq_notify_period_ms(const struct rmq_notify *n);

/* Due every rmq_notify_period_ms: STATUS= (connections, msg/s, Kafka state) every few seconds, and WATCHDOG=1 only
 * when every core's loop ticked since the previous ping (a stalled core stops the pings, systemd restarts us). */
void rmq_notify_tick(struct rmq_notify *n, const struct broker *b, uint64_t now_ms);

/* True when every one of the ncores made progress: ticks[i] > prev[i]. Pure; index of the first stalled core in
 * *stalled otherwise. */
bool rmq_notify_all_progressed(const uint64_t *prev, const uint64_t *ticks, int ncores, int *stalled);

#endif
