/* admin.c: the admin listener (evhttp): /healthz, /metrics, /status, POST /reload.
 * Keep it on loopback: it has no authentication. */
#include "server.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "ra.h"
#include "log.h"
#include "origin_pool.h"
#include "workers.h"

static void iso_time(time_t t, char *out, size_t cap)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void json_str(struct evbuffer *b, const char *s)
{
	char tmp[1200];
	eg_json_escape(tmp, sizeof(tmp), s, strlen(s));
	evbuffer_add_printf(b, "\"%s\"", tmp);
}

static void render_status(struct eg_server *srv, struct evbuffer *b)
{
	char loaded[32], last[32];
	struct eg_policy *p = srv->policy;
	iso_time(p->loaded_at, loaded, sizeof(loaded));
	iso_time(srv->last_reload_at, last, sizeof(last));
	evbuffer_add_printf(b, "{\"generation\":%llu,\"pid\":%d,\"bundle_sha256\":\"%s\",\"loaded_at\":\"%s\",",
			    (unsigned long long)srv->generation, (int)getpid(), p->sha256, loaded);
	if (srv->last_reload_ok) {
		evbuffer_add_printf(b, "\"last_reload\":\"ok\",");
	} else {
		const struct eg_load_error *e = &srv->last_error;
		evbuffer_add_printf(b, "\"last_reload\":{\"result\":\"error\",\"stage\":");
		json_str(b, e->stage);
		evbuffer_add_printf(b, ",\"file\":");
		json_str(b, e->file);
		evbuffer_add_printf(b, ",\"line\":%d,\"message\":", e->line);
		json_str(b, e->message);
		evbuffer_add_printf(b, "},");
	}
	evbuffer_add_printf(b, "\"last_reload_at\":\"%s\",\"reloading\":%s,\"draining\":%s,\"conf_dir\":", last,
			    srv->building ? "true" : "false", srv->draining ? "true" : "false");
	json_str(b, srv->conf_dir);
	struct eg_metrics total = { 0 };
	eg_workers_add_metrics(srv->workers, &total);
	evbuffer_add_printf(b, ",\"active_connections\":%lld,\"active_tunnels\":%lld,\"idle_origin_connections\":%d,"
			    "\"cached_request_states\":%d,\"rules\":%d",
			    (long long)(srv->metrics.active_connections + total.active_connections),
			    (long long)(srv->metrics.active_tunnels + total.active_tunnels),
			    eg_origin_pool_count(srv->origins), srv->req_state_nfree, eg_allowlist_count(p->allowlist));
	if (srv->workers)
		eg_workers_render_status(srv->workers, srv, b);
	evbuffer_add(b, "}\n", 2);
}

/* The counters of every proxy process: the master's own plus what its workers published. */
static void sum_metrics(struct eg_server *srv, struct eg_metrics *m)
{
	memcpy(m, &srv->metrics, sizeof(*m));
	eg_workers_add_metrics(srv->workers, m);
}

static void render_metrics(struct eg_server *srv, struct evbuffer *b)
{
	struct eg_metrics sum;
	const struct eg_metrics *m = &sum;
	sum_metrics(srv, &sum);
	evbuffer_add_printf(b,
		"# HELP enrollgate_requests_total Requests and tunnels by verdict.\n"
		"# TYPE enrollgate_requests_total counter\n"
		"enrollgate_requests_total{verdict=\"allow\"} %llu\n"
		"enrollgate_requests_total{verdict=\"deny\"} %llu\n",
		(unsigned long long)m->requests_allowed, (unsigned long long)m->requests_denied);
	evbuffer_add_printf(b, "# HELP enrollgate_responses_total Responses by status code.\n"
			       "# TYPE enrollgate_responses_total counter\n");
	for (int s = 100; s < 600; s++)
		if (m->responses_by_status[s])
			evbuffer_add_printf(b, "enrollgate_responses_total{code=\"%d\"} %llu\n", s,
					    (unsigned long long)m->responses_by_status[s]);
	evbuffer_add_printf(b,
		"# TYPE enrollgate_connections_total counter\nenrollgate_connections_total %llu\n"
		"# TYPE enrollgate_connections_refused_total counter\nenrollgate_connections_refused_total %llu\n"
		"# HELP enrollgate_accept_pauses_total Times accepting failed (out of file descriptors) and paused.\n"
		"# TYPE enrollgate_accept_pauses_total counter\nenrollgate_accept_pauses_total %llu\n"
		"# TYPE enrollgate_active_connections gauge\nenrollgate_active_connections %lld\n"
		"# TYPE enrollgate_active_tunnels gauge\nenrollgate_active_tunnels %lld\n"
		"# TYPE enrollgate_tunnels_total counter\nenrollgate_tunnels_total %llu\n"
		"# TYPE enrollgate_tunnels_spliced_total counter\nenrollgate_tunnels_spliced_total %llu\n"
		"# TYPE enrollgate_bodies_spliced_total counter\nenrollgate_bodies_spliced_total %llu\n"
		"# TYPE enrollgate_policy_generation gauge\nenrollgate_policy_generation %llu\n"
		"# TYPE enrollgate_reloads_total counter\n"
		"enrollgate_reloads_total{result=\"ok\"} %llu\nenrollgate_reloads_total{result=\"error\"} %llu\n"
		"# TYPE enrollgate_hook_calls_total counter\nenrollgate_hook_calls_total %llu\n"
		"# TYPE enrollgate_hook_failures_total counter\n"
		"enrollgate_hook_failures_total{kind=\"error\"} %llu\n"
		"enrollgate_hook_failures_total{kind=\"timeout\"} %llu\n"
		"enrollgate_hook_failures_total{kind=\"memory\"} %llu\n"
		"# TYPE enrollgate_lua_memory_bytes gauge\nenrollgate_lua_memory_bytes %zu\n"
		"# HELP enrollgate_relayed_bytes_total Bytes relayed for finished requests and tunnels.\n"
		"# TYPE enrollgate_relayed_bytes_total counter\n"
		"enrollgate_relayed_bytes_total{direction=\"client_to_upstream\"} %llu\n"
		"enrollgate_relayed_bytes_total{direction=\"upstream_to_client\"} %llu\n",
		(unsigned long long)m->connections_total, (unsigned long long)m->connections_refused,
		(unsigned long long)m->accept_pauses,
		(long long)m->active_connections, (long long)m->active_tunnels, (unsigned long long)m->tunnels_total,
		(unsigned long long)m->tunnels_spliced, (unsigned long long)m->bodies_spliced,
		(unsigned long long)srv->generation, (unsigned long long)m->reloads_ok, (unsigned long long)m->reloads_failed,
		(unsigned long long)m->hooks.calls, (unsigned long long)m->hooks.errors, (unsigned long long)m->hooks.timeouts,
		(unsigned long long)m->hooks.oom, eg_policy_lua_memory(srv->policy),
		(unsigned long long)m->bytes_client_to_upstream, (unsigned long long)m->bytes_upstream_to_client);
	eg_workers_render_metrics(srv->workers, b);
	eg_ra_est_render_metrics(srv->est, b);
	eg_ra_cmp_render_metrics(srv->cmp, b);
}

static void reply(struct evhttp_request *req, int code, const char *reason, const char *ctype, struct evbuffer *b)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", ctype);
	evhttp_send_reply(req, code, reason, b);
}

void eg_admin_reload_answer(struct eg_server *srv, struct evhttp_request *req, int ok)
{
	struct evbuffer *b = evbuffer_new();
	if (ok < 0) {
		evbuffer_add_printf(b, "{\"result\":\"error\",\"message\":\"reload not possible now\"}\n");
		reply(req, 503, "Service Unavailable", "application/json", b);
	} else if (ok) {
		evbuffer_add_printf(b, "{\"result\":\"ok\",\"generation\":%llu,\"bundle_sha256\":\"%s\"}\n",
				    (unsigned long long)srv->generation, srv->policy->sha256);
		reply(req, 200, "OK", "application/json", b);
	} else {
		const struct eg_load_error *e = &srv->last_error;
		evbuffer_add_printf(b, "{\"result\":\"error\",\"generation\":%llu,\"stage\":", (unsigned long long)srv->generation);
		json_str(b, e->stage);
		evbuffer_add_printf(b, ",\"file\":");
		json_str(b, e->file);
		evbuffer_add_printf(b, ",\"line\":%d,\"message\":", e->line);
		json_str(b, e->message);
		evbuffer_add_printf(b, "}\n");
		reply(req, 422, "Unprocessable Entity", "application/json", b);
	}
	evbuffer_free(b);
}

static void admin_cb(struct evhttp_request *req, void *arg)
{
	struct eg_server *srv = arg;
	const char *uri = evhttp_request_get_uri(req);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evbuffer *b = evbuffer_new();
	if (!b) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	int is_get = cmd == EVHTTP_REQ_GET || cmd == EVHTTP_REQ_HEAD;
	if (strcmp(uri, "/healthz") == 0 && is_get) {
		evbuffer_add_printf(b, srv->draining ? "draining\n" : "ok\n");
		reply(req, srv->draining ? 503 : 200, srv->draining ? "Service Unavailable" : "OK", "text/plain", b);
	} else if (strcmp(uri, "/metrics") == 0 && is_get) {
		render_metrics(srv, b);
		reply(req, 200, "OK", "text/plain; version=0.0.4", b);
	} else if (strcmp(uri, "/status") == 0 && is_get) {
		render_status(srv, b);
		reply(req, 200, "OK", "application/json", b);
	} else if (strcmp(uri, "/reload") == 0 && cmd == EVHTTP_REQ_POST) {
		eg_server_request_reload(srv, req); /* answered when the build ends */
	} else if (strcmp(uri, "/reload") == 0 || strcmp(uri, "/status") == 0 || strcmp(uri, "/metrics") == 0 ||
		   strcmp(uri, "/healthz") == 0) {
		evbuffer_add_printf(b, "method not allowed\n");
		reply(req, 405, "Method Not Allowed", "text/plain", b);
	} else {
		evbuffer_add_printf(b, "not found: /healthz /metrics /status, POST /reload\n");
		reply(req, 404, "Not Found", "text/plain", b);
	}
	evbuffer_free(b);
}

int eg_admin_start(struct eg_server *srv, const char *addr)
{
	struct sockaddr_storage ss;
	int len;
	if (eg_parse_listen_addr(addr, &ss, &len) < 0) {
		eg_log(EG_LOG_ERROR, "admin", "bad admin address '%s'", addr);
		return -1;
	}
	srv->admin = evhttp_new(srv->base);
	if (!srv->admin)
		return -1;
	evhttp_set_allowed_methods(srv->admin, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(srv->admin, 8192);
	evhttp_set_max_body_size(srv->admin, 4096);
	evhttp_set_timeout(srv->admin, 30);
	evhttp_set_gencb(srv->admin, admin_cb, srv);
	/* our own socket: evhttp_bind_socket resolves with AI_ADDRCONFIG, which refuses 127.0.0.1
	 * while no interface has an IPv4 address yet (an appliance before DHCP) */
	evutil_socket_t fd = eg_listen_socket(addr);
	if (fd < 0 || !evhttp_accept_socket_with_handle(srv->admin, fd)) {
		if (fd >= 0)
			evutil_closesocket(fd);
		eg_log(EG_LOG_ERROR, "admin", "cannot listen on %s", addr);
		return -1;
	}
	return 0;
}
