/* server.c: event loop, listeners, signals, reload orchestration and drain. */
#include "server.h"
#include "proxy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "ra.h"
#include "workers.h"
#include "log.h"
#include "origin_pool.h"

int eg_parse_listen_addr(const char *s, struct sockaddr_storage *ss, int *len)
{
	char host[128];
	const char *colon;
	memset(ss, 0, sizeof(*ss));
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
			return -1;
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || (size_t)(colon - s) >= sizeof(host))
			return -1;
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
	}
	char *end;
	long port = strtol(colon + 1, &end, 10);
	if (!isdigit((unsigned char)colon[1]) || *end || port < 1 || port > 65535)
		return -1;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof(*s4);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*s6);
		return 0;
	}
	return -1;
}

void eg_format_addr(const struct sockaddr *sa, char *out, size_t cap)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	}
	snprintf(out, cap, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

evutil_socket_t eg_listen_socket(const char *addr)
{
	struct sockaddr_storage ss;
	int len, one = 1;
	if (eg_parse_listen_addr(addr, &ss, &len) < 0)
		return -1;
	evutil_socket_t fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) < 0 || listen(fd, 1024) < 0) {
		evutil_closesocket(fd);
		return -1;
	}
	return fd;
}

struct eg_policy *eg_server_policy(struct eg_server *srv)
{
	return eg_policy_ref(srv->policy);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	eg_proxy_accept(arg, fd, sa, salen);
}

/* Accepting failed (EMFILE, ENFILE, ENOBUFS...): the listening socket stays readable, so libevent
 * would call us again at once, in a loop. Pause every proxy listener for EG_ACCEPT_PAUSE_MS instead
 * (connections already open keep working and free descriptors) and log one line per pause. */
#define EG_ACCEPT_PAUSE_MS 100

static void accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct eg_server *srv = arg;
	(void)fd;
	(void)what;
	for (int i = 0; i < srv->nlisteners; i++)
		evconnlistener_enable(srv->listeners[i]);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct eg_server *srv = arg;
	int err = EVUTIL_SOCKET_ERROR();
	(void)l;
	if (!srv->accept_pause_ev || evtimer_pending(srv->accept_pause_ev, NULL))
		return;
	srv->metrics.accept_pauses++;
	eg_log(EG_LOG_ERROR, "accept", "accept failed: %s; not accepting for %d ms (%lld connections open)",
	       evutil_socket_error_to_string(err), EG_ACCEPT_PAUSE_MS, (long long)srv->metrics.active_connections);
	for (int i = 0; i < srv->nlisteners; i++)
		evconnlistener_disable(srv->listeners[i]);
	struct timeval tv = { 0, EG_ACCEPT_PAUSE_MS * 1000 };
	evtimer_add(srv->accept_pause_ev, &tv);
}

/* Raise the soft RLIMIT_NOFILE to what max_connections can need: a proxied connection holds two
 * sockets, a spliced tunnel two pipes more. Up to the hard limit; below it, a warning saying how
 * many connections fit (past that, accept pauses as above). Called at start-up and on reloads. */
#define EG_FDS_PER_CONNECTION 6
#define EG_FDS_RESERVED 128 /* listeners, admin, EST/CMP, upstream pools, DNS, logs */

static void raise_fd_limit(int max_connections)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	rlim_t need = (rlim_t)max_connections * EG_FDS_PER_CONNECTION + EG_FDS_RESERVED;
	if (rl.rlim_cur >= need)
		return;
	rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= need ? need : rl.rlim_max;
	if (want > rl.rlim_cur) {
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur < need)
		eg_log(EG_LOG_WARN, "limits",
		       "max_connections %d can need %llu file descriptors, the limit is %llu (raise the hard limit: "
		       "ulimit -Hn, LimitNOFILE=): about %llu tunnels fit",
		       max_connections, (unsigned long long)need, (unsigned long long)rl.rlim_cur,
		       (unsigned long long)(rl.rlim_cur > EG_FDS_RESERVED ? (rl.rlim_cur - EG_FDS_RESERVED) / EG_FDS_PER_CONNECTION : 0));
}

/* ---- reload ---- */

/* Nice value of the builder thread: a reload under full load yields the CPU to the event loop
 * (a build is a few ms of CPU; at weight 15 against the loop's 1024 it waits for idle moments
 * rather than adding them to request latency), and still finishes on a busy machine. */
#define EG_BUILDER_NICE 19

/* Build a generation from the configuration directory and wake the loop to publish it. */
static void build_generation(struct eg_server *srv)
{
	srv->built = eg_policy_load(srv->conf_dir, srv->lua_dir, &srv->metrics.hooks, &srv->built_error);
	eg_wake_post(srv->wake, &srv->build_done);
}

static void *builder_main(void *arg)
{
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), EG_BUILDER_NICE); /* this thread only */
	build_generation(arg);
	return NULL;
}

static void start_build(struct eg_server *srv)
{
	srv->building = 1;
	srv->rebuild_requested = 0;
	srv->built = NULL;
	if (pthread_create(&srv->builder, NULL, builder_main, srv) != 0) {
		/* no thread: build inline (rare; the loop stalls for the duration) */
		srv->builder = 0;
		build_generation(srv);
	}
}

static void log_load_error(const struct eg_load_error *e, const char *event)
{
	struct eg_jbuf j;
	eg_jbuf_begin(&j, EG_LOG_ERROR, event);
	eg_jbuf_str(&j, "stage", e->stage);
	eg_jbuf_str(&j, "file", e->file);
	eg_jbuf_int(&j, "line", e->line);
	eg_jbuf_str(&j, "message", e->message);
	eg_jbuf_emit(&j);
	eg_log_flush();
}

/* Name servers, search list and /etc/hosts from the generation's dns.resolv_conf, at start-up and
 * again at every reload: a DHCP lease that brings other DNS servers is a reload (SIGHUP), never a
 * restart that would drop tunnels. Lookups in flight during a reload are sent again to the new
 * servers. Without a usable file libevent asks 127.0.0.1, and names in /etc/hosts still resolve. */
static void dns_configure(struct eg_server *srv, const struct eg_settings *s, int again)
{
	if (again) {
		evdns_base_clear_nameservers_and_suspend(srv->dns);
		evdns_base_clear_host_addresses(srv->dns);
	}
	int rc = evdns_base_resolv_conf_parse(srv->dns, DNS_OPTIONS_ALL, s->resolv_conf);
	if (rc != 0)
		eg_log(EG_LOG_WARN, "dns", "%s: %s; asking 127.0.0.1, and /etc/hosts", s->resolv_conf,
		       rc == 1 || rc == 2 ? "cannot read it" : rc == 6 ? "no nameserver in it" : "not usable");
	char tmo[32];
	snprintf(tmo, sizeof(tmo), "%g", s->dns_timeout / 2 > 0.5 ? s->dns_timeout / 2 : 0.5);
	evdns_base_set_option(srv->dns, "timeout:", tmo);
	evdns_base_set_option(srv->dns, "attempts:", "2");
	if (again) {
		evdns_base_resume(srv->dns);
		eg_log(EG_LOG_INFO, "dns", "%d name server(s) from %s", evdns_base_count_nameservers(srv->dns),
		       s->resolv_conf);
	}
}

static void publish(struct eg_server *srv, struct eg_policy *p)
{
	struct eg_policy *old = srv->policy;
	p->generation = ++srv->generation;
	srv->policy = p;
	eg_log_set_level(p->settings.log_level);
	raise_fd_limit(p->settings.max_connections);
	if (srv->dns) /* at start-up, eg_server_init configures it */
		dns_configure(srv, &p->settings, 1);
	if (old) {
		if (strcmp(old->settings.admin, p->settings.admin) != 0 || old->settings.nlisten != p->settings.nlisten)
			eg_log(EG_LOG_WARN, "reload", "listener changes take effect at the next restart");
		if (old->settings.workers != p->settings.workers && !srv->worker_slot)
			eg_log(EG_LOG_WARN, "reload", "a change of workers takes effect at the next restart");
		eg_policy_unref(old); /* freed when the last request holding it ends */
	}
}

static void reload_done(void *arg)
{
	struct eg_server *srv = arg;
	if (srv->builder)
		pthread_join(srv->builder, NULL);
	srv->builder = 0;
	srv->building = 0;
	srv->last_reload_at = time(NULL);
	int ok = srv->built != NULL;
	if (ok) {
		publish(srv, srv->built);
		srv->built = NULL;
		srv->last_reload_ok = 1;
		srv->metrics.reloads_ok++;
		struct eg_jbuf j;
		eg_jbuf_begin(&j, EG_LOG_INFO, "reload");
		eg_jbuf_str(&j, "result", "ok");
		eg_jbuf_int(&j, "generation", (long long)srv->generation);
		eg_jbuf_str(&j, "bundle_sha256", srv->policy->sha256);
		eg_jbuf_emit(&j);
	} else {
		srv->last_error = srv->built_error;
		srv->last_reload_ok = 0;
		srv->metrics.reloads_failed++;
		log_load_error(&srv->built_error, "reload_failed");
	}
	for (int i = 0; i < srv->nwaiters; i++)
		eg_admin_reload_answer(srv, srv->waiters[i], ok);
	srv->nwaiters = 0;
	if (srv->rebuild_requested) {
		memcpy(srv->waiters, srv->next_waiters, sizeof(srv->waiters));
		srv->nwaiters = srv->nnext_waiters;
		srv->nnext_waiters = 0;
		start_build(srv);
	}
}

void eg_server_request_reload(struct eg_server *srv, struct evhttp_request *waiter)
{
	if (srv->draining) {
		if (waiter)
			eg_admin_reload_answer(srv, waiter, -1);
		return;
	}
	eg_workers_signal(srv->workers, SIGHUP); /* every worker reloads on its own */
	if (srv->building) {
		/* the build under way may have read the files already: queue another one */
		srv->rebuild_requested = 1;
		if (waiter && srv->nnext_waiters < EG_MAX_RELOAD_WAITERS)
			srv->next_waiters[srv->nnext_waiters++] = waiter;
		else if (waiter)
			eg_admin_reload_answer(srv, waiter, -1);
		return;
	}
	srv->nwaiters = 0;
	if (waiter)
		srv->waiters[srv->nwaiters++] = waiter;
	start_build(srv);
}

/* ---- signals and drain ---- */

static void sighup_cb(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	eg_log(EG_LOG_INFO, "signal", "SIGHUP: reloading policy");
	eg_server_request_reload(arg, NULL);
}

static void drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct eg_server *srv = arg;
	(void)fd;
	(void)what;
	eg_log(EG_LOG_WARN, "shutdown", "drain timeout: closing %lld connections", (long long)srv->metrics.active_connections);
	event_base_loopexit(srv->base, NULL);
}

/* Nothing left to finish: no proxy connection, EST request, CMP message or worker process. */
static int drained(const struct eg_server *srv)
{
	return srv->metrics.active_connections == 0 && eg_ra_est_busy(srv->est) == 0 && eg_ra_cmp_busy(srv->cmp) == 0 &&
	       eg_workers_alive(srv->workers) == 0;
}

void eg_server_exit_if_drained(struct eg_server *srv)
{
	if (srv->draining && drained(srv))
		event_base_loopexit(srv->base, NULL);
}

static void sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct eg_server *srv = arg;
	(void)what;
	if (srv->draining)
		return;
	srv->draining = 1;
	eg_workers_signal(srv->workers, SIGTERM); /* each drains its own connections */
	eg_log(EG_LOG_INFO, "shutdown", "%s: no new connections; draining %lld", sig == SIGINT ? "SIGINT" : "SIGTERM",
	       (long long)srv->metrics.active_connections);
	for (int i = 0; i < srv->nlisteners; i++) {
		evconnlistener_free(srv->listeners[i]);
		srv->listeners[i] = NULL;
	}
	srv->nlisteners = 0;
	eg_proxy_close_idle(srv);
	eg_ra_est_stop_accepting(srv->est);
	eg_ra_cmp_stop_accepting(srv->cmp);
	if (drained(srv)) {
		event_base_loopexit(srv->base, NULL);
		return;
	}
	double secs = srv->policy->settings.drain_timeout;
	struct timeval tv = { (time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };
	srv->drain_timer = evtimer_new(srv->base, drain_timeout_cb, srv);
	evtimer_add(srv->drain_timer, &tv);
}

static void log_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	eg_log_flush();
}

/* ---- life cycle ---- */

/* libevent keeps a small slot (about 20 bytes) per descriptor number, from the number's first use
 * until the base is freed. Made during a load, each slot lands between connection buffers and
 * keeps its heap page resident after they are freed (a 64-connection load left some 130 of them
 * and 450 KiB of heap nobody used). Made here for the first EG_FD_SLOTS numbers, they sit
 * together. An add and a delete in the same loop pass never reach epoll (the changelist). */
#define EG_FD_SLOTS 256

static void noop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
}

static void reserve_fd_slots(struct event_base *base)
{
	struct event *ev = event_new(base, -1, 0, noop_cb, NULL);
	if (!ev)
		return;
	for (int fd = 0; fd < EG_FD_SLOTS; fd++) {
		event_assign(ev, base, fd, EV_READ, noop_cb, NULL);
		event_add(ev, NULL);
		event_del(ev);
	}
	event_free(ev);
}

int eg_server_init(struct eg_server *srv, struct eg_policy *first, const char *conf_dir, const char *lua_dir,
		   const struct eg_start *start)
{
	memset(srv, 0, sizeof(*srv));
	srv->worker_slot = start->worker_slot;
	snprintf(srv->conf_dir, sizeof(srv->conf_dir), "%s", conf_dir);
	snprintf(srv->lua_dir, sizeof(srv->lua_dir), "%s", lua_dir);
	signal(SIGPIPE, SIG_IGN);
	/* epoll changelist: an event enabled and disabled again within one loop pass (a bufferevent's
	 * write event around a relayed chunk) costs no epoll_ctl at all */
	struct event_config *cfg = event_config_new();
	if (!cfg)
		return -1;
	event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	srv->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	/* libevent runs without thread support: the builder and the password checks reach the loop
	 * through srv->wake only */
	if (!srv->base || !(srv->wake = eg_wake_new(srv->base)))
		return -1;
	srv->build_done = (struct eg_wake_item){ reload_done, srv, NULL };
	first->stats = &srv->metrics.hooks;
	publish(srv, first);
	srv->last_reload_ok = 1;
	srv->last_reload_at = time(NULL);
	srv->boot = first->settings;
	if (start->nlisten > 0) {
		for (int i = 0; i < start->nlisten; i++)
			snprintf(srv->boot.listen[i], sizeof(srv->boot.listen[i]), "%s", start->listen[i]);
		srv->boot.nlisten = start->nlisten;
	}
	if (start->admin)
		snprintf(srv->boot.admin, sizeof(srv->boot.admin), "%s", start->admin);
	if (start->workers >= 0)
		srv->boot.workers = start->workers;
	/* a worker serves the proxy only: the master keeps admin, EST and CMP */
	int nworkers = srv->worker_slot ? 1 : eg_workers_count(srv->boot.workers);
	int shared = srv->worker_slot > 0 || nworkers > 1; /* listeners shared with SO_REUSEPORT */
	eg_log_set_worker(srv->worker_slot, shared);

	srv->dns = evdns_base_new(srv->base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	srv->origins = eg_origin_pool_new();
	reserve_fd_slots(srv->base);
	if (!srv->dns)
		return -1;
	dns_configure(srv, &first->settings, 0);

	for (int i = 0; i < srv->boot.nlisten; i++) {
		struct sockaddr_storage ss;
		int len;
		if (eg_parse_listen_addr(srv->boot.listen[i], &ss, &len) < 0) {
			eg_log(EG_LOG_ERROR, "listen", "bad listen address '%s' (expected ADDR:PORT or [V6]:PORT)", srv->boot.listen[i]);
			return -1;
		}
		unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC;
		if (shared)
			flags |= LEV_OPT_REUSEABLE_PORT;
		if (ss.ss_family == AF_INET6)
			flags |= LEV_OPT_BIND_IPV6ONLY;
		struct evconnlistener *l = evconnlistener_new_bind(srv->base, accept_cb, srv, flags, 1024, (struct sockaddr *)&ss, len);
		if (!l) {
			eg_log(EG_LOG_ERROR, "listen", "cannot listen on %s: %s", srv->boot.listen[i],
			       evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
			return -1;
		}
		evconnlistener_set_error_cb(l, accept_error_cb);
		srv->listeners[srv->nlisteners++] = l;
	}
	if (srv->worker_slot) {
		if (eg_worker_attach(srv, srv->worker_slot, start->worker_shm_fd) < 0) {
			eg_log(EG_LOG_ERROR, "workers", "worker %d: the master's shared memory is unusable", srv->worker_slot);
			return -1;
		}
	} else {
		if (eg_ra_est_start(srv) < 0 || eg_ra_cmp_start(srv) < 0)
			return -1;
		if (srv->boot.admin[0] && eg_admin_start(srv, srv->boot.admin) < 0)
			return -1;
	}

	srv->accept_pause_ev = evtimer_new(srv->base, accept_resume_cb, srv);
	srv->sig_hup = evsignal_new(srv->base, SIGHUP, sighup_cb, srv);
	srv->sig_term = evsignal_new(srv->base, SIGTERM, sigterm_cb, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, sigterm_cb, srv);
	srv->log_flush_ev = event_new(srv->base, -1, EV_PERSIST, log_flush_cb, srv);
	struct timeval flush_tv = { 0, 100000 };
	if (!srv->accept_pause_ev || !srv->sig_hup || !srv->sig_term || !srv->sig_int || !srv->log_flush_ev)
		return -1;
	evsignal_add(srv->sig_hup, NULL);
	evsignal_add(srv->sig_term, NULL);
	evsignal_add(srv->sig_int, NULL);
	sigset_t hup; /* a worker's master starts it with SIGHUP blocked (workers.c) */
	sigemptyset(&hup);
	sigaddset(&hup, SIGHUP);
	sigprocmask(SIG_UNBLOCK, &hup, NULL);
	evtimer_add(srv->log_flush_ev, &flush_tv);

	struct eg_jbuf j;
	eg_jbuf_begin(&j, EG_LOG_INFO, "start");
	eg_jbuf_int(&j, "pid", getpid());
	if (srv->worker_slot)
		eg_jbuf_int(&j, "worker", srv->worker_slot);
	for (int i = 0; i < srv->boot.nlisten; i++)
		eg_jbuf_str(&j, "listen", srv->boot.listen[i]);
	if (!srv->worker_slot)
		eg_jbuf_str(&j, "admin", srv->boot.admin);
	if (!srv->worker_slot)
		eg_jbuf_int(&j, "workers", nworkers);
	eg_jbuf_str(&j, "conf_dir", srv->conf_dir);
	eg_jbuf_str(&j, "lua_dir", srv->lua_dir);
	eg_jbuf_int(&j, "generation", (long long)srv->generation);
	eg_jbuf_str(&j, "bundle_sha256", srv->policy->sha256);
	eg_jbuf_int(&j, "rules", eg_allowlist_count(srv->policy->allowlist));
	eg_jbuf_emit(&j);
	eg_log_flush();
	/* last: the workers bind the addresses bound above */
	if (nworkers > 1 && !(srv->workers = eg_workers_start(srv, nworkers)))
		return -1;
	return 0;
}

int eg_server_run(struct eg_server *srv)
{
	int rc = event_base_dispatch(srv->base);
	eg_log(EG_LOG_INFO, "shutdown", "stopped");
	eg_log_flush();
	return rc < 0 ? 1 : 0;
}

void eg_server_free(struct eg_server *srv)
{
	if (srv->building && srv->builder)
		pthread_join(srv->builder, NULL);
	if (srv->built)
		eg_policy_unref(srv->built);
	for (int i = 0; i < srv->nlisteners; i++)
		evconnlistener_free(srv->listeners[i]);
	if (srv->admin)
		evhttp_free(srv->admin);
	eg_ra_est_free(srv->est);
	eg_ra_cmp_free(srv->cmp);
	eg_workers_free(srv->workers);
	eg_worker_detach(srv);
	if (srv->dns)
		evdns_base_free(srv->dns, 0);
	struct event *evs[] = { srv->sig_hup, srv->sig_term, srv->sig_int, srv->drain_timer, srv->log_flush_ev,
				srv->accept_pause_ev };
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (evs[i])
			event_free(evs[i]);
	eg_proxy_free_pools(srv);
	eg_wake_free(srv->wake); /* (after the builder and the password threads are done) */
	/* connections still open at exit are reclaimed by the OS; the policy goes with the process */
	if (srv->base)
		event_base_free(srv->base);
}
