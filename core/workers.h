/* workers.h: more than one forward-proxy process (`workers` in enrollgate.lua).
 *
 * The process an operator starts (the master, worker 0) keeps everything it has with one worker:
 * its own proxy listeners, the admin API, EST, CMP, signals and reloads. For workers = N > 1 it
 * starts N - 1 more processes, the same binary re-executed as `run --worker K --worker-shm FD`,
 * which serve only the forward proxy: each loads the policy itself (its own Lua state) and binds
 * the master's proxy addresses with SO_REUSEPORT, so that the kernel spreads new connections over
 * all N. No lock is shared on the hot path; each process reloads on its own SIGHUP.
 *
 * The master forwards reloads (SIGHUP) and the drain (SIGTERM/SIGINT), starts a worker again after
 * it died (1 s; 2 ... 32 s while it keeps dying at start), and waits for every worker when it
 * drains. Workers die with the master (PR_SET_PDEATHSIG). Each worker copies its counters into its slot of a shared memory mapping
 * every EG_WORKER_PUBLISH_MS, and /metrics and /status add them up. */
#ifndef EG_WORKERS_H
#define EG_WORKERS_H

#include <stdint.h>
#include <sys/types.h>

#include "metrics.h"

#define EG_WORKER_PUBLISH_MS 200

struct eg_server;
struct eg_workers;
struct evbuffer;

/* Master: starts workers 1..n-1 serving srv's proxy listeners (already bound, SO_REUSEPORT).
 * NULL with an error logged if the shared mapping cannot be had; a worker that cannot be
 * started is logged and tried again like one that died. */
struct eg_workers *eg_workers_start(struct eg_server *srv, int n);
/* Master: sends sig to every running worker. NULL-safe. */
void eg_workers_signal(struct eg_workers *w, int sig);
/* Master: worker processes not yet reaped (0 for NULL). */
int eg_workers_alive(const struct eg_workers *w);
/* Master: adds the workers' last published counters to *total. NULL-safe. */
void eg_workers_add_metrics(const struct eg_workers *w, struct eg_metrics *total);
/* Master: the workers' gauges for /metrics (processes, restarts). NULL-safe: one process. */
void eg_workers_render_metrics(const struct eg_workers *w, struct evbuffer *b);
/* Master: `,"workers":[...]` for /status, one object per process, the master first. */
void eg_workers_render_status(const struct eg_workers *w, const struct eg_server *srv, struct evbuffer *b);
/* Master: kills (SIGKILL) and reaps what is left, frees w. NULL-safe. */
void eg_workers_free(struct eg_workers *w);

/* Worker: maps slot of the master's shared memory (fd inherited) and publishes srv's counters
 * every EG_WORKER_PUBLISH_MS from now on. -1 if the mapping is unusable. */
int eg_worker_attach(struct eg_server *srv, int slot, int shm_fd);
/* Worker: publishes now. */
void eg_worker_publish(struct eg_server *srv);
/* Worker: publishes a last time (the counters of its drain) and unmaps. NULL-safe link. */
void eg_worker_detach(struct eg_server *srv);

#endif
