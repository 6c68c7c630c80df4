/* server.h: the running daemon — event loop, listeners, the live policy generation,
 * reload orchestration, metrics and shutdown. One instance per process. */
#ifndef EG_SERVER_H
#define EG_SERVER_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

#include "metrics.h"
#include "policy.h"
#include "settings.h"
#include "wake.h"

struct event_base;
struct evdns_base;
struct evconnlistener;
struct evhttp;
struct evhttp_request;
struct eg_est;
struct eg_cmp;
struct event;

#define EG_MAX_RELOAD_WAITERS 32

struct eg_server {
	struct event_base *base;
	struct evdns_base *dns;
	struct evconnlistener *listeners[EG_MAX_LISTEN];
	int nlisteners;
	struct evhttp *admin;
	struct eg_est *est;          /* EST registration authority, when est.lua exists */
	struct eg_cmp *cmp;          /* CMP proxy, when cmp.lua exists */
	struct event *sig_hup, *sig_term, *sig_int, *drain_timer, *log_flush_ev;
	struct eg_wake *wake;        /* other threads wake the loop through it (no libevent locks) */
	struct event *accept_pause_ev; /* proxy listeners paused after an accept error (EMFILE) */

	char conf_dir[512];
	char lua_dir[512];
	struct eg_settings boot;     /* settings the listeners were bound with */

	struct eg_policy *policy;    /* live generation (the server's own reference) */
	uint64_t generation;
	struct eg_load_error last_error;
	int last_reload_ok;
	time_t last_reload_at;

	/* reload in progress on the builder thread */
	pthread_t builder;
	struct eg_wake_item build_done; /* posted by the builder when its generation is ready */
	int building;
	int rebuild_requested;
	struct eg_policy *built;
	struct eg_load_error built_error;
	struct evhttp_request *waiters[EG_MAX_RELOAD_WAITERS];
	int nwaiters;            /* answered by the build in progress */
	struct evhttp_request *next_waiters[EG_MAX_RELOAD_WAITERS];
	int nnext_waiters;       /* answered by the build after it */

	int draining;
	struct eg_metrics metrics;
	struct eg_conn *idle_head; /* connections waiting for a request (closed on drain) */
	struct eg_req_state *req_state_free; /* free list of per-request state (proxy.c) */
	struct eg_origin_pool *origins; /* idle origin connections shared between clients (proxy.c) */
	int req_state_nfree;
	struct event *idle_trim_ev; /* gives memory back once no proxy connection is left (proxy.c) */

	int worker_slot;             /* 0: the master (admin, EST, CMP); K > 0: proxy worker K (workers.c) */
	struct eg_workers *workers;  /* the master's other proxy processes, NULL with workers = 1 */
	struct eg_worker_link *worker_link; /* a worker's slot of the shared counters */
};

/* What the command line says beyond the configuration directory. */
struct eg_start {
	char (*listen)[128];         /* --listen overrides of enrollgate.lua's listen (nlisten of them) */
	int nlisten;
	const char *admin;           /* --admin, or NULL */
	int workers;                 /* --workers (EG_WORKERS_AUTO: auto), or -1 for the setting */
	int worker_slot;             /* --worker K: started by a master as its worker K; 0 otherwise */
	int worker_shm_fd;           /* --worker-shm FD: the master's shared counters */
};

struct eg_conn;
struct eg_req_state;

/* Set up everything (listeners, admin, signals) around a loaded first generation. */
int eg_server_init(struct eg_server *srv, struct eg_policy *first, const char *conf_dir, const char *lua_dir,
		   const struct eg_start *start);
int eg_server_run(struct eg_server *srv);
void eg_server_free(struct eg_server *srv);

/* Start building a new generation (coalesced if one is being built). */
void eg_server_request_reload(struct eg_server *srv, struct evhttp_request *waiter);

/* During a drain: leave the loop once no proxy connection, EST request or CMP message is left. */
void eg_server_exit_if_drained(struct eg_server *srv);

/* Current generation, with a reference for the caller. */
struct eg_policy *eg_server_policy(struct eg_server *srv);

/* proxy.c: accept callback target and shutdown helpers. */
void eg_proxy_accept(struct eg_server *srv, int fd, const struct sockaddr *sa, int salen);
void eg_proxy_close_idle(struct eg_server *srv);
void eg_proxy_free_pools(struct eg_server *srv);

/* admin.c */
int eg_admin_start(struct eg_server *srv, const char *addr);
void eg_admin_reload_answer(struct eg_server *srv, struct evhttp_request *req, int ok);

/* A listening socket on a numeric "ADDR:PORT" / "[V6]:PORT" (no name resolution, so it works
 * before the network is configured), or -1. For evhttp_accept_socket_with_handle. */
int eg_listen_socket(const char *addr);

/* Parse "ADDR:PORT" / "[V6]:PORT" into a sockaddr. 0 or -1. */
int eg_parse_listen_addr(const char *s, struct sockaddr_storage *ss, int *len);
/* The inverse: "ADDR:PORT" or "[V6]:PORT" of sa into out ("?:0" for other families). */
void eg_format_addr(const struct sockaddr *sa, char *out, size_t cap);

#endif
