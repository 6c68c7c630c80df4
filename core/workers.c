/* workers.c: the master's worker processes and the counters they share; see workers.h. */
#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "log.h"
#include "server.h"

/* One worker's published state, in the shared mapping. A sequence lock: odd while the worker
 * writes, so that a reader retries instead of adding up half-copied counters. */
struct eg_worker_slot {
	atomic_uint seq;
	int pid;
	uint64_t generation;
	int last_reload_ok;
	int draining;
	char sha256[65];
	struct eg_metrics m;
};

struct worker_proc {
	struct eg_workers *w;
	int k;                     /* its slot */
	pid_t pid;                 /* 0: not running */
	uint64_t restarts;
	time_t started;            /* when it was last started */
	int backoff;               /* seconds before the next start: 1, doubled while it dies young, 32 at most */
	struct event *respawn_ev;  /* backoff seconds after it died */
};

struct eg_workers {
	struct eg_server *srv;
	int n;                     /* processes in all, the master included */
	int shm_fd;
	struct eg_worker_slot *slots; /* n of them; slot 0 (the master) is unused */
	struct worker_proc proc[EG_MAX_WORKERS];
	struct event *sigchld;
	struct eg_metrics retired; /* what workers that ended had counted */
	char *argv[16 + 2 * EG_MAX_LISTEN]; /* run -c ... --listen ... --worker K --worker-shm FD */
	char slot_arg[EG_MAX_WORKERS][8], fd_arg[16], listen_arg[EG_MAX_LISTEN][128];
	int slot_argi;             /* argv index of K */
};

/* The worker side: this process's slot and its publishing timer. */
struct eg_worker_link {
	struct eg_worker_slot *slot;
	void *map;
	size_t map_len;
	struct event *publish_ev;
};

static size_t map_size(int n)
{
	return sizeof(struct eg_worker_slot) * (size_t)n;
}

/* The address a listener is bound to, so that a listener on port 0 is shared too. */
static int bound_addr(struct evconnlistener *l, char *out, size_t cap)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len) < 0)
		return -1;
	eg_format_addr((struct sockaddr *)&ss, out, cap);
	return 0;
}

static int read_slot(const struct eg_workers *w, int k, struct eg_worker_slot *out);
static void add_metrics(struct eg_metrics *t, const struct eg_metrics *m);

/* fork + exec of worker k; between the two only async-signal-safe calls. */
static void spawn(struct eg_workers *w, int k)
{
	pid_t master = getpid();
	w->argv[w->slot_argi] = w->slot_arg[k];
	pid_t pid = fork();
	if (pid < 0) {
		eg_log(EG_LOG_ERROR, "workers", "cannot start worker %d: %s; trying again in 1 s", k, strerror(errno));
		struct timeval tv = { 1, 0 };
		evtimer_add(w->proc[k].respawn_ev, &tv);
		return;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != master)
			_exit(1); /* the master is gone already */
		/* nothing of the master's crosses the exec but stdin/out/err and the shared counters:
		 * libevent creates upstream sockets without FD_CLOEXEC, and a worker holding one
		 * would keep that connection open after the master closed it */
		close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
		fcntl(w->shm_fd, F_SETFD, 0);
		/* a reload before the worker's own handler is in place would kill it (SIGHUP's default
		 * action): it stays pending until eg_server_init unblocks it */
		sigset_t hup;
		sigemptyset(&hup);
		sigaddset(&hup, SIGHUP);
		sigprocmask(SIG_SETMASK, &hup, NULL);
		execv("/proc/self/exe", w->argv);
		_exit(127);
	}
	w->proc[k].pid = pid;
	w->proc[k].started = time(NULL);
	eg_log(EG_LOG_INFO, "workers", "worker %d started (pid %d)", k, (int)pid);
}

static void respawn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_proc *p = arg;
	(void)fd, (void)what;
	if (!p->w->srv->draining && p->pid == 0)
		spawn(p->w, p->k);
}

/* SIGCHLD: reap every worker that ended (only those: waitpid(-1) would take other children's
 * statuses); start it again unless draining. */
static void sigchld_cb(evutil_socket_t sig, short what, void *arg)
{
	struct eg_workers *w = arg;
	(void)sig, (void)what;
	for (int k = 1; k < w->n; k++) {
		int status;
		pid_t pid = w->proc[k].pid;
		if (pid <= 0 || waitpid(pid, &status, WNOHANG) != pid)
			continue;
		w->proc[k].pid = 0;
		/* its counters stay in the sums (a restart must not make them go back); its gauges end */
		struct eg_worker_slot last;
		if (read_slot(w, k, &last)) {
			last.m.active_connections = last.m.active_tunnels = 0;
			add_metrics(&w->retired, &last.m);
		}
		memset(&w->slots[k], 0, sizeof(w->slots[k]));
		if (w->srv->draining) {
			eg_log(EG_LOG_INFO, "workers", "worker %d (pid %d) stopped", k, (int)pid);
			continue;
		}
		/* one that keeps dying at start (a policy that no longer loads, say) is tried less often */
		struct worker_proc *p = &w->proc[k];
		p->backoff = time(NULL) - p->started < 10 && p->backoff ? (p->backoff < 32 ? 2 * p->backoff : 32) : 1;
		if (WIFSIGNALED(status))
			eg_log(EG_LOG_WARN, "workers", "worker %d (pid %d) killed by signal %d; starting it again in %d s", k,
			       (int)pid, WTERMSIG(status), p->backoff);
		else
			eg_log(EG_LOG_WARN, "workers", "worker %d (pid %d) exited with status %d; starting it again in %d s", k,
			       (int)pid, WEXITSTATUS(status), p->backoff);
		p->restarts++;
		struct timeval tv = { p->backoff, 0 };
		evtimer_add(p->respawn_ev, &tv);
	}
	if (w->srv->draining)
		eg_server_exit_if_drained(w->srv);
}

struct eg_workers *eg_workers_start(struct eg_server *srv, int n)
{
	struct eg_workers *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->srv = srv;
	w->n = n;
	w->shm_fd = memfd_create("enrollgate-workers", MFD_CLOEXEC);
	if (w->shm_fd < 0 || ftruncate(w->shm_fd, (off_t)map_size(n)) < 0 ||
	    (w->slots = mmap(NULL, map_size(n), PROT_READ | PROT_WRITE, MAP_SHARED, w->shm_fd, 0)) == MAP_FAILED) {
		eg_log(EG_LOG_ERROR, "workers", "no shared memory for %d workers: %s", n, strerror(errno));
		w->slots = NULL;
		eg_workers_free(w);
		return NULL;
	}
	int a = 0;
	w->argv[a++] = "enrollgate";
	w->argv[a++] = "run";
	w->argv[a++] = "-c";
	w->argv[a++] = srv->conf_dir;
	w->argv[a++] = "--lua-dir";
	w->argv[a++] = srv->lua_dir;
	for (int i = 0; i < srv->nlisteners; i++) {
		if (bound_addr(srv->listeners[i], w->listen_arg[i], sizeof(w->listen_arg[i])) < 0)
			snprintf(w->listen_arg[i], sizeof(w->listen_arg[i]), "%s", srv->boot.listen[i]);
		w->argv[a++] = "--listen";
		w->argv[a++] = w->listen_arg[i];
	}
	w->argv[a++] = "--worker";
	w->slot_argi = a++;
	snprintf(w->fd_arg, sizeof(w->fd_arg), "%d", w->shm_fd);
	w->argv[a++] = "--worker-shm";
	w->argv[a++] = w->fd_arg;
	w->argv[a] = NULL;
	w->sigchld = evsignal_new(srv->base, SIGCHLD, sigchld_cb, w);
	if (!w->sigchld || evsignal_add(w->sigchld, NULL) < 0) {
		eg_workers_free(w);
		return NULL;
	}
	for (int k = 1; k < n; k++) {
		snprintf(w->slot_arg[k], sizeof(w->slot_arg[k]), "%d", k);
		w->proc[k].w = w;
		w->proc[k].k = k;
		if (!(w->proc[k].respawn_ev = evtimer_new(srv->base, respawn_cb, &w->proc[k]))) {
			eg_workers_free(w);
			return NULL;
		}
	}
	for (int k = 1; k < n; k++)
		spawn(w, k);
	return w;
}

void eg_workers_signal(struct eg_workers *w, int sig)
{
	if (!w)
		return;
	for (int k = 1; k < w->n; k++)
		if (w->proc[k].pid > 0)
			kill(w->proc[k].pid, sig);
}

int eg_workers_alive(const struct eg_workers *w)
{
	int alive = 0;
	for (int k = 1; w && k < w->n; k++)
		alive += w->proc[k].pid > 0;
	return alive;
}

/* A consistent copy of slot k, or 0 if it has never been published. */
static int read_slot(const struct eg_workers *w, int k, struct eg_worker_slot *out)
{
	struct eg_worker_slot *s = &w->slots[k];
	for (int tries = 0; tries < 1000; tries++) {
		unsigned a = atomic_load_explicit(&s->seq, memory_order_acquire);
		if (a & 1)
			continue;
		memcpy(out, s, sizeof(*out));
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&s->seq, memory_order_relaxed) == a)
			return a != 0;
	}
	return 0;
}

static void add_metrics(struct eg_metrics *t, const struct eg_metrics *m)
{
	t->requests_allowed += m->requests_allowed;
	t->requests_denied += m->requests_denied;
	for (int i = 0; i < 600; i++)
		t->responses_by_status[i] += m->responses_by_status[i];
	t->connections_total += m->connections_total;
	t->connections_refused += m->connections_refused;
	t->accept_pauses += m->accept_pauses;
	t->active_connections += m->active_connections;
	t->active_tunnels += m->active_tunnels;
	t->tunnels_total += m->tunnels_total;
	t->tunnels_spliced += m->tunnels_spliced;
	t->bodies_spliced += m->bodies_spliced;
	t->bytes_client_to_upstream += m->bytes_client_to_upstream;
	t->bytes_upstream_to_client += m->bytes_upstream_to_client;
	/* reloads are the master's: a worker's own reloads show in /status */
	t->hooks.calls += m->hooks.calls;
	t->hooks.errors += m->hooks.errors;
	t->hooks.timeouts += m->hooks.timeouts;
	t->hooks.oom += m->hooks.oom;
}

void eg_workers_add_metrics(const struct eg_workers *w, struct eg_metrics *total)
{
	if (!w)
		return;
	add_metrics(total, &w->retired);
	struct eg_worker_slot s;
	for (int k = 1; k < w->n; k++)
		if (read_slot(w, k, &s))
			add_metrics(total, &s.m);
}

void eg_workers_render_metrics(const struct eg_workers *w, struct evbuffer *b)
{
	uint64_t restarts = 0;
	for (int k = 1; w && k < w->n; k++)
		restarts += w->proc[k].restarts;
	evbuffer_add_printf(b,
		"# HELP enrollgate_worker_processes Forward-proxy processes running, the master included.\n"
		"# TYPE enrollgate_worker_processes gauge\nenrollgate_worker_processes %d\n"
		"# TYPE enrollgate_worker_restarts_total counter\nenrollgate_worker_restarts_total %llu\n",
		1 + eg_workers_alive(w), (unsigned long long)restarts);
}

void eg_workers_render_status(const struct eg_workers *w, const struct eg_server *srv, struct evbuffer *b)
{
	evbuffer_add_printf(b, ",\"workers\":[{\"worker\":0,\"pid\":%d,\"generation\":%llu,\"bundle_sha256\":\"%s\","
			       "\"last_reload\":\"%s\",\"active_connections\":%lld,\"connections_total\":%llu}",
			    (int)getpid(), (unsigned long long)srv->generation, srv->policy->sha256,
			    srv->last_reload_ok ? "ok" : "error", (long long)srv->metrics.active_connections,
			    (unsigned long long)srv->metrics.connections_total);
	struct eg_worker_slot s;
	for (int k = 1; w && k < w->n; k++) {
		int have = read_slot(w, k, &s);
		evbuffer_add_printf(b, ",{\"worker\":%d,\"pid\":%d,\"running\":%s,\"restarts\":%llu", k,
				    (int)w->proc[k].pid, w->proc[k].pid > 0 ? "true" : "false",
				    (unsigned long long)w->proc[k].restarts);
		if (have && s.pid == w->proc[k].pid)
			evbuffer_add_printf(b, ",\"generation\":%llu,\"bundle_sha256\":\"%.64s\",\"last_reload\":\"%s\","
					       "\"draining\":%s,\"active_connections\":%lld,\"connections_total\":%llu",
					    (unsigned long long)s.generation, s.sha256, s.last_reload_ok ? "ok" : "error",
					    s.draining ? "true" : "false", (long long)s.m.active_connections,
					    (unsigned long long)s.m.connections_total);
		evbuffer_add(b, "}", 1);
	}
	evbuffer_add(b, "]", 1);
}

void eg_workers_free(struct eg_workers *w)
{
	if (!w)
		return;
	for (int k = 1; k < w->n; k++) {
		if (w->proc[k].pid > 0) {
			kill(w->proc[k].pid, SIGKILL);
			waitpid(w->proc[k].pid, NULL, 0);
		}
		if (w->proc[k].respawn_ev)
			event_free(w->proc[k].respawn_ev);
	}
	if (w->sigchld)
		event_free(w->sigchld);
	if (w->slots)
		munmap(w->slots, map_size(w->n));
	if (w->shm_fd >= 0)
		close(w->shm_fd);
	free(w);
}

/* ---- the worker side ---- */

void eg_worker_publish(struct eg_server *srv)
{
	struct eg_worker_link *l = srv->worker_link;
	if (!l)
		return;
	struct eg_worker_slot *s = l->slot;
	unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
	atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	s->pid = (int)getpid();
	s->generation = srv->generation;
	s->last_reload_ok = srv->last_reload_ok;
	s->draining = srv->draining;
	snprintf(s->sha256, sizeof(s->sha256), "%s", srv->policy->sha256);
	memcpy(&s->m, &srv->metrics, sizeof(s->m));
	atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
}

static void publish_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what;
	eg_worker_publish(arg);
}

int eg_worker_attach(struct eg_server *srv, int slot, int shm_fd)
{
	off_t len = lseek(shm_fd, 0, SEEK_END);
	if (slot < 1 || len < (off_t)map_size(slot + 1))
		return -1;
	struct eg_worker_link *l = calloc(1, sizeof(*l));
	if (!l)
		return -1;
	l->map_len = (size_t)len;
	void *m = mmap(NULL, l->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, shm_fd, 0);
	close(shm_fd);
	if (m == MAP_FAILED) {
		free(l);
		return -1;
	}
	l->map = m;
	l->slot = (struct eg_worker_slot *)m + slot;
	srv->worker_link = l;
	l->publish_ev = event_new(srv->base, -1, EV_PERSIST, publish_cb, srv);
	struct timeval tv = { 0, EG_WORKER_PUBLISH_MS * 1000 };
	if (!l->publish_ev || evtimer_add(l->publish_ev, &tv) < 0)
		return -1;
	eg_worker_publish(srv);
	return 0;
}

void eg_worker_detach(struct eg_server *srv)
{
	struct eg_worker_link *l = srv->worker_link;
	if (!l)
		return;
	eg_worker_publish(srv);
	if (l->publish_ev)
		event_free(l->publish_ev);
	munmap(l->map, l->map_len);
	free(l);
	srv->worker_link = NULL;
}
