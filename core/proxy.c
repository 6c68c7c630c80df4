/* proxy.c: one client connection of the forward proxy, from request head to response end;
 * relaying the request and its response is forward.c's (proxy_int.h joins the two).
 *
 * A connection owns a client bufferevent and at most one upstream bufferevent (kept alive
 * and reused while requests go to the same host:port; when the client leaves, a clean idle
 * upstream goes to the shared origin pool, origin_pool.h). Each request holds a reference on
 * the policy generation that decided it until its response ends. Bodies are streamed in
 * both directions with evbuffer moves (no copies) and back-pressure through watermarks.
 * CONNECT requests become tunnels (tunnel.c). */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_struct.h> /* ev_write, for eg_bev_flush_now */
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "origin_pool.h"
#include "pipe_relay.h"
#include "proxy_int.h"


static void process_head(struct eg_conn *c);

/* Larger single writes than libevent's 16 KiB default, so bodies and tunnels leave in fewer
 * writev calls. Reads stay at 4 KiB per call whatever is set here: libevent 2.1's evbuffer_read
 * caps them (EVBUFFER_MAX_READ); see docs/performance.md. */
void eg_bev_tune(struct bufferevent *bev)
{
	bufferevent_set_max_single_read(bev, EG_IO_CHUNK);
	bufferevent_set_max_single_write(bev, EG_IO_CHUNK);
}

/* Write what bev's output holds now instead of on the next loop pass. When all of it goes, the
 * write event that queueing it armed is cancelled before it reaches epoll (the base uses a
 * changelist), so a small response costs one writev and no epoll_ctl. The bufferevent's write
 * callback does not run for bytes written here: only for callers that do not wait for it.
 * Errors are left for the bufferevent's next write to report. */
void eg_bev_flush_now(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);
	if (evbuffer_get_length(out) == 0 || !(bufferevent_get_enabled(bev) & EV_WRITE))
		return;
	/* a socket bufferevent keeps its output's front frozen against outside draining, and
	 * unfreezes it around its own writes the same way */
	evbuffer_unfreeze(out, 1);
	int n = evbuffer_write(out, bufferevent_getfd(bev));
	evbuffer_freeze(out, 1);
	if (n < 0)
		return;
	if (evbuffer_get_length(out) == 0)
		event_del(&bev->ev_write);
}

double eg_px_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void eg_px_set_tv(struct timeval *tv, double secs)
{
	tv->tv_sec = (time_t)secs;
	tv->tv_usec = (suseconds_t)((secs - (double)tv->tv_sec) * 1e6);
}

const struct eg_settings *eg_conn_settings(struct eg_conn *c)
{
	return c->pol ? &c->pol->settings : &c->srv->policy->settings;
}

void eg_px_arm_timer(struct eg_conn *c, double secs)
{
	struct timeval tv;
	eg_px_set_tv(&tv, secs);
	evtimer_add(c->timer, &tv);
}

/* ---- idle list (for drain) ---- */

static void idle_add(struct eg_conn *c)
{
	if (c->on_idle_list)
		return;
	c->idle_next = c->srv->idle_head;
	c->idle_prev = NULL;
	if (c->srv->idle_head)
		c->srv->idle_head->idle_prev = c;
	c->srv->idle_head = c;
	c->on_idle_list = 1;
}

static void idle_del(struct eg_conn *c)
{
	if (!c->on_idle_list)
		return;
	if (c->idle_prev)
		c->idle_prev->idle_next = c->idle_next;
	else
		c->srv->idle_head = c->idle_next;
	if (c->idle_next)
		c->idle_next->idle_prev = c->idle_prev;
	c->on_idle_list = 0;
}

/* ---- teardown ---- */

void eg_px_free_upstream(struct eg_conn *c)
{
	if (c->ubev) {
		bufferevent_free(c->ubev);
		c->ubev = NULL;
	}
	c->up_reusable = 0;
	c->up_idle = 0;
	c->up_host[0] = '\0';
}

/* The client is done with its upstream: a clean idle one (its last response ended, nothing
 * pending either way, no authentication on it) goes to the shared origin pool, any other is
 * closed. */
void eg_px_release_upstream(struct eg_conn *c)
{
	if (c->ubev && c->up_reusable && c->up_idle && !c->up_private && !c->is_connect && c->srv->origins &&
	    !c->srv->draining && evbuffer_get_length(bufferevent_get_input(c->ubev)) == 0 &&
	    evbuffer_get_length(bufferevent_get_output(c->ubev)) == 0) {
		eg_origin_pool_put(c->srv->origins, c->ubev, c->up_host, c->up_port, (struct sockaddr *)&c->up_addr,
				   c->up_addrlen);
		c->ubev = NULL;
	}
	eg_px_free_upstream(c);
}

/* Per-request state (proxy.h): at most EG_REQ_STATE_KEEP free ones are kept for reuse, so a
 * keep-alive load allocates nothing per request and 10k idle connections hold none of it. */
#define EG_REQ_STATE_KEEP 64

static int req_state_get(struct eg_conn *c)
{
	struct eg_server *srv = c->srv;
	if (c->rs)
		return 0;
	if (srv->req_state_free) {
		c->rs = srv->req_state_free;
		srv->req_state_free = c->rs->next_free;
		srv->req_state_nfree--;
	} else if (!(c->rs = malloc(sizeof(*c->rs)))) {
		return -1;
	}
	/* the parsers reset what they fill; an empty path for a request that fails before it */
	c->rs->path_copy[0] = '\0';
	return 0;
}

void eg_conn_put_req_state(struct eg_conn *c)
{
	struct eg_server *srv = c->srv;
	if (!c->rs)
		return;
	if (srv->req_state_nfree < EG_REQ_STATE_KEEP) {
		c->rs->next_free = srv->req_state_free;
		srv->req_state_free = c->rs;
		srv->req_state_nfree++;
	} else {
		free(c->rs);
	}
	c->rs = NULL;
}

static void free_req_states(struct eg_server *srv)
{
	while (srv->req_state_free) {
		struct eg_req_state *n = srv->req_state_free->next_free;
		free(srv->req_state_free);
		srv->req_state_free = n;
	}
	srv->req_state_nfree = 0;
}

void eg_proxy_free_pools(struct eg_server *srv)
{
	eg_origin_pool_free(srv->origins);
	srv->origins = NULL;
	free_req_states(srv);
	if (srv->idle_trim_ev) {
		event_free(srv->idle_trim_ev);
		srv->idle_trim_ev = NULL;
	}
}

/* Memory a load leaves behind goes back once the proxy is idle: IDLE_TRIM_AFTER seconds after the
 * last connection closed, the free request states are freed and malloc_trim() returns the free
 * heap pages (a keep-alive load of 64 connections otherwise leaves ~0.6 MB more RSS for good). While
 * the origin pool still holds connections it runs again after they have expired. */
#define IDLE_TRIM_AFTER 1 /* seconds */

static void idle_trim_cb(evutil_socket_t fd, short what, void *arg)
{
	struct eg_server *srv = arg;
	(void)fd, (void)what;
	if (srv->metrics.active_connections > 0)
		return; /* scheduled again when the last one closes */
	free_req_states(srv);
	eg_policy_collect(srv->policy); /* the hooks' garbage first, so that its pages can go too */
	malloc_trim(0);
	if (eg_origin_pool_count(srv->origins) > 0) {
		struct timeval tv = { (time_t)EG_ORIGIN_POOL_IDLE + 1, 0 };
		evtimer_add(srv->idle_trim_ev, &tv);
	}
}

static void schedule_idle_trim(struct eg_server *srv)
{
	if (!srv->idle_trim_ev && !(srv->idle_trim_ev = evtimer_new(srv->base, idle_trim_cb, srv)))
		return;
	struct timeval tv = { IDLE_TRIM_AFTER, 0 };
	evtimer_add(srv->idle_trim_ev, &tv);
}

void eg_px_end_request(struct eg_conn *c)
{
	if (c->dns_req) {
		evdns_getaddrinfo_cancel(c->dns_req);
		c->dns_req = NULL;
	}
	if (c->ai) {
		evutil_freeaddrinfo(c->ai);
		c->ai = NULL;
	}
	if (c->pol) {
		eg_policy_unref(c->pol);
		c->pol = NULL;
	}
	c->in_request = 0;
}

void eg_conn_free(struct eg_conn *c)
{
	struct eg_server *srv = c->srv;
	idle_del(c);
	eg_tunnel_free(c);
	eg_px_body_splice_end(c);
	if (c->state == EG_ST_TUNNEL || c->state == EG_ST_SNI)
		srv->metrics.active_tunnels--;
	eg_px_end_request(c);
	eg_px_release_upstream(c);
	if (c->cbev)
		bufferevent_free(c->cbev);
	if (c->timer)
		event_free(c->timer);
	free(c->headbuf);
	eg_conn_put_req_state(c);
	free(c);
	srv->metrics.active_connections--;
	if (srv->metrics.active_connections == 0 && !srv->draining)
		schedule_idle_trim(srv);
	eg_server_exit_if_drained(srv);
}

/* ---- access log ---- */

void eg_conn_log_access(struct eg_conn *c, int status)
{
	struct eg_server *srv = c->srv;
	if (status > 0 && status < 600)
		srv->metrics.responses_by_status[status]++;
	srv->metrics.bytes_client_to_upstream += c->bytes_in;
	srv->metrics.bytes_upstream_to_client += c->bytes_out;
	if (c->verdict.allow && status < 400)
		srv->metrics.requests_allowed++;
	else
		srv->metrics.requests_denied++;
	const struct eg_settings *s = eg_conn_settings(c);
	enum eg_log_level lvl = status >= 500 ? EG_LOG_WARN : EG_LOG_INFO; /* 5xx: the proxy or the origin failed */
	if (!s->access_log || !eg_log_enabled(lvl))
		return;
	struct eg_jbuf j;
	eg_jbuf_begin(&j, lvl, "access");
	eg_jbuf_str(&j, "client", c->client);
	eg_jbuf_str(&j, "method", c->method[0] ? c->method : NULL);
	if (c->target.host[0]) {
		char tgt[600];
		if (c->is_connect)
			snprintf(tgt, sizeof(tgt), c->target.host_is_ip == 6 ? "[%s]:%u" : "%s:%u", c->target.host, c->target.port);
		else
			/* the query string is left out: it can carry credentials */
			snprintf(tgt, sizeof(tgt), c->target.host_is_ip == 6 ? "http://[%s]:%u%.*s" : "http://%s:%u%.*s",
				 c->target.host, c->target.port, (int)c->path_len_noquery, c->target.path.p && c->rs ? c->rs->path_copy : "");
		eg_jbuf_str(&j, "target", tgt);
		eg_jbuf_str(&j, "host", c->target.host);
		eg_jbuf_int(&j, "port", c->target.port);
		if (c->verdict.route_host[0]) {
			char rt[300];
			snprintf(rt, sizeof(rt), c->verdict.route_is_ip == 6 ? "[%s]:%u" : "%s:%u", c->verdict.route_host,
				 c->verdict.route_port);
			eg_jbuf_str(&j, "route", rt);
		}
	}
	eg_jbuf_int(&j, "status", status);
	eg_jbuf_str(&j, "verdict", c->verdict.allow && status < 400 ? "allow" : "deny");
	eg_jbuf_str(&j, "rule", c->verdict.rule ? c->verdict.rule->name : NULL);
	if (c->verdict.stage)
		eg_jbuf_str(&j, "stage", c->verdict.stage);
	if (c->deny_reason[0])
		eg_jbuf_str(&j, "reason", c->deny_reason);
	if (c->sni[0])
		eg_jbuf_str(&j, "sni", c->sni);
	eg_jbuf_int(&j, "bytes_in", (long long)c->bytes_in);
	eg_jbuf_int(&j, "bytes_out", (long long)c->bytes_out);
	eg_jbuf_double(&j, "duration_ms", eg_px_now_ms() - c->t_start);
	eg_jbuf_int(&j, "gen", (long long)(c->gen ? c->gen : srv->generation));
	eg_jbuf_emit(&j);
}

/* ---- error responses ---- */

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 414: return "URI Too Long";
	case 421: return "Misdirected Request";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status < 500 ? "Client Error" : "Server Error";
	}
}

static void close_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	eg_conn_free(arg);
}

static void discard_read_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

/* The last response is written. Closing a socket with unread input makes the kernel send a
 * RST that can destroy that response before the client reads it, so half-close first and
 * discard what the client still sends for a moment (a "lingering close"). */
static void close_when_flushed_cb(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	if (c->lingering)
		return;
	c->lingering = 1;
	shutdown(bufferevent_getfd(bev), SHUT_WR);
	evbuffer_drain(bufferevent_get_input(bev), evbuffer_get_length(bufferevent_get_input(bev)));
	bufferevent_setcb(bev, discard_read_cb, NULL, close_event_cb, c);
	eg_px_arm_timer(c, 2);
	bufferevent_enable(bev, EV_READ);
}


/* Finish the connection after what is queued to the client has been written. */
void eg_conn_close_after_flush(struct eg_conn *c)
{
	eg_px_free_upstream(c);
	c->state = EG_ST_CLOSING;
	idle_del(c);
	bufferevent_disable(c->cbev, EV_READ);
	bufferevent_set_timeouts(c->cbev, NULL, NULL);
	eg_px_arm_timer(c, 5); /* bounds flush and lingering together */
	bufferevent_setcb(c->cbev, NULL, close_when_flushed_cb, close_event_cb, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	if (evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0)
		close_when_flushed_cb(c->cbev, c);
}

/* Answer with status and a one-line reason, log it, close. */
void eg_conn_send_error(struct eg_conn *c, int status, const char *reason)
{
	struct evbuffer *out = bufferevent_get_output(c->cbev);
	snprintf(c->deny_reason, sizeof(c->deny_reason), "%s", reason);
	if (!c->response_started) {
		/* the reason goes into the body as text only: no markup, no CR/LF from input */
		char body[256];
		size_t n = 0;
		for (const char *p = reason; *p && n < sizeof(body) - 2; p++)
			body[n++] = (*p >= 0x20 && *p < 0x7f) ? *p : '?';
		body[n++] = '\n';
		evbuffer_add_printf(out,
				    "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
				    "Connection: close\r\nVia: 1.1 enrollgate\r\nX-Enrollgate-Reason: %.*s\r\n\r\n",
				    status, status_text(status), n, (int)(n - 1), body);
		evbuffer_add(out, body, n);
		c->response_started = 1;
	}
	eg_conn_log_access(c, status);
	eg_px_end_request(c);
	eg_conn_close_after_flush(c);
}

/* ---- connection start ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg);

/* Wait for the next request head on this connection. */
void eg_px_await_head(struct eg_conn *c, int first)
{
	const struct eg_settings *s = &c->srv->policy->settings;
	c->state = EG_ST_HEAD;
	c->scan_from = 0;
	eg_conn_put_req_state(c);
	c->response_started = 0;
	c->method[0] = '\0';
	c->target.host[0] = '\0';
	c->deny_reason[0] = '\0';
	c->sni[0] = '\0';
	c->bytes_in = c->bytes_out = 0;
	c->gen = 0;
	memset(&c->verdict, 0, sizeof(c->verdict));
	bufferevent_setcb(c->cbev, eg_px_client_read_cb, NULL, eg_px_client_event_cb, c);
	bufferevent_set_timeouts(c->cbev, NULL, NULL);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	bufferevent_enable(c->cbev, EV_READ);
	/* a fresh connection gets header_timeout for its first head; a kept-alive one may idle */
	eg_px_arm_timer(c, first ? s->header_timeout : s->idle_timeout);
	c->head_timer_is_idle = !first;
	if (c->srv->draining && !first) {
		eg_conn_free(c);
		return;
	}
	idle_add(c);
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		process_head(c); /* pipelined request already here */
}

void eg_proxy_accept(struct eg_server *srv, int fd, const struct sockaddr *sa, int salen)
{
	(void)salen;
	const struct eg_settings *s = &srv->policy->settings;
	if (srv->draining || srv->metrics.active_connections >= s->max_connections) {
		srv->metrics.connections_refused++;
		static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 27\r\nConnection: close\r\n\r\n"
					   "too many connections; retry\n";
		ssize_t w = write(fd, busy, sizeof(busy) - 1);
		char sink[4096];
		(void)w;
		/* half-close and swallow what already arrived, so the close is a FIN, not a RST */
		shutdown(fd, SHUT_WR);
		while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0)
			;
		evutil_closesocket(fd);
		/* one line per second at most: a flood of refusals must not become a flood of logs */
		static double last_logged;
		double now = eg_px_now_ms();
		if (now - last_logged >= 1000.0) {
			eg_log(EG_LOG_WARN, "refused", "503 at accept: %s (%lld connections open, max_connections %d); "
			       "%llu refused so far", srv->draining ? "draining" : "too many connections",
			       (long long)srv->metrics.active_connections, s->max_connections,
			       (unsigned long long)srv->metrics.connections_refused);
			last_logged = now;
		}
		return;
	}
	struct eg_conn *c = calloc(1, sizeof(*c));
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->srv = srv;
	c->cbev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->cbev)
		eg_bev_tune(c->cbev);
	c->timer = evtimer_new(srv->base, timer_cb, c);
	srv->metrics.active_connections++;
	srv->metrics.connections_total++;
	if (!c->cbev || !c->timer) {
		if (!c->cbev)
			evutil_closesocket(fd);
		eg_conn_free(c);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	eg_format_addr(sa, c->client, sizeof(c->client));
	c->t_start = eg_px_now_ms();
	eg_px_await_head(c, 1);
}

void eg_proxy_close_idle(struct eg_server *srv)
{
	eg_origin_pool_clear(srv->origins);
	while (srv->idle_head) {
		struct eg_conn *c = srv->idle_head;
		if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0) {
			idle_del(c); /* a request is arriving: let it finish */
			continue;
		}
		eg_conn_free(c);
	}
}


static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct eg_conn *c = arg;
	(void)fd;
	(void)what;
	switch (c->state) {
	case EG_ST_HEAD:
		if (evbuffer_get_length(bufferevent_get_input(c->cbev)) == 0)
			eg_conn_free(c); /* idle keep-alive, or connected and never spoke: close quietly */
		else
			eg_conn_send_error(c, 408, "request head not received in time");
		break;
	case EG_ST_RESOLVING:
		eg_conn_send_error(c, 504, "name resolution timed out");
		break;
	case EG_ST_CONNECTING:
		eg_conn_send_error(c, 504, "upstream connect timed out");
		break;
	case EG_ST_CLOSING:
		eg_conn_free(c); /* the client does not read its last response, or keeps sending */
		break;
	case EG_ST_FORWARDING:
		if (c->body_splice) {
			eg_px_body_splice_timer(c);
			break;
		}
		if (!c->response_started)
			eg_conn_send_error(c, 504, "upstream response timed out");
		else
			eg_conn_free(c);
		break;
	default:
		eg_tunnel_timer(c);
		break;
	}
}

/* ---- request head ---- */

static int head_complete(struct eg_conn *c, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in);
	struct evbuffer_ptr start;
	if (c->scan_from == 0 && len > 0) {
		/* Refuse non-HTTP garbage and the HTTP/2 preface before waiting for a full head. */
		char first[16];
		size_t n = evbuffer_copyout(in, first, len < sizeof(first) ? len : sizeof(first));
		struct eg_http_head *h = &c->rs->head;
		enum eg_http_err e = eg_http_parse_request(first, n, h);
		if (e == EG_HTTP_H2_PREFACE) {
			eg_conn_send_error(c, 505, "HTTP/2 is not supported: speak HTTP/1.1 to this proxy");
			return -1;
		}
		if (e == EG_HTTP_BAD) {
			eg_conn_send_error(c, 400, h->reason);
			return -1;
		}
	}
	size_t limit = c->srv->policy->settings.max_header_bytes;
	size_t from = c->scan_from > 3 ? c->scan_from - 3 : 0;
	evbuffer_ptr_set(in, &start, from, EVBUFFER_PTR_SET);
	struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, &start);
	if (end.pos < 0) {
		c->scan_from = len;
		if (len > limit) {
			eg_conn_send_error(c, 431, "request head too large");
			return -1;
		}
		return 0;
	}
	size_t hl = (size_t)end.pos + 4;
	if (hl > limit) {
		eg_conn_send_error(c, 431, "request head too large");
		return -1;
	}
	if (hl > c->headcap) {
		/* grows to the largest head this connection has sent, never beyond the limit */
		char *nb = realloc(c->headbuf, hl);
		if (!nb) {
			eg_conn_send_error(c, 503, "out of memory");
			return -1;
		}
		c->headbuf = nb;
		c->headcap = hl;
	}
	evbuffer_remove(in, c->headbuf, hl);
	c->headlen = hl;
	return 1;
}

void eg_px_client_read_cb(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_HEAD)
		process_head(c);
	else if (c->state == EG_ST_FORWARDING)
		eg_conn_pump_request(c);
}

void eg_px_client_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	(void)what;
	if (c->state == EG_ST_HEAD && evbuffer_get_length(bufferevent_get_input(c->cbev)) == 0) {
		eg_conn_free(c);
		return;
	}
	/* a client that half-closes after a complete request still gets its answer, then the end */
	if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == BEV_EVENT_EOF && !c->is_connect &&
	    ((c->state == EG_ST_FORWARDING && c->req_done) ||
	     ((c->state == EG_ST_RESOLVING || c->state == EG_ST_CONNECTING) && c->rs->head.body == EG_BODY_NONE))) {
		c->client_close = 1;
		c->cbev_eof = 1;
		return;
	}
	if (c->in_request && !c->response_started && (what & BEV_EVENT_EOF) && c->state != EG_ST_FORWARDING) {
		eg_conn_log_access(c, 499);
	} else if (c->in_request) {
		eg_conn_log_access(c, 499);
	}
	eg_conn_free(c);
}

static void copy_method(struct eg_conn *c)
{
	size_t n = c->rs->head.method.n < sizeof(c->method) - 1 ? c->rs->head.method.n : sizeof(c->method) - 1;
	memcpy(c->method, c->rs->head.method.p, n);
	c->method[n] = '\0';
}


/* Where the request goes: the target, or the hook's route(host, port). */
static const char *dest_host(const struct eg_conn *c)
{
	return c->verdict.route_host[0] ? c->verdict.route_host : c->target.host;
}

static uint16_t dest_port(const struct eg_conn *c)
{
	return c->verdict.route_host[0] ? c->verdict.route_port : c->target.port;
}

static int dest_is_ip(const struct eg_conn *c)
{
	return c->verdict.route_host[0] ? c->verdict.route_is_ip : c->target.host_is_ip;
}

/* GET, HEAD, OPTIONS, TRACE: methods a client may expect to be sent again (RFC 9110 9.2.2). */
int eg_px_safe_to_resend(const struct eg_conn *c)
{
	static const char *const safe[] = { "GET", "HEAD", "OPTIONS", "TRACE" };
	for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
		if (strcmp(c->method, safe[i]) == 0)
			return 1;
	return 0;
}

static void process_head(struct eg_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	if (req_state_get(c) < 0) {
		eg_conn_send_error(c, 503, "out of memory");
		return;
	}
	int r = head_complete(c, in);
	if (r <= 0)
		return;
	idle_del(c);
	evtimer_del(c->timer);
	c->t_start = eg_px_now_ms();
	c->in_request = 1;
	enum eg_http_err e = eg_http_parse_request(c->headbuf, c->headlen, &c->rs->head);
	switch (e) {
	case EG_HTTP_OK:
		break;
	case EG_HTTP_TOO_LARGE:
		eg_conn_send_error(c, 431, c->rs->head.reason);
		return;
	case EG_HTTP_BAD_VERSION:
		eg_conn_send_error(c, 505, c->rs->head.reason);
		return;
	case EG_HTTP_H2_PREFACE:
		eg_conn_send_error(c, 505, "HTTP/2 is not supported: speak HTTP/1.1 to this proxy");
		return;
	case EG_HTTP_UNSUPPORTED_TE:
		eg_conn_send_error(c, 501, c->rs->head.reason);
		return;
	default:
		eg_conn_send_error(c, 400, c->rs->head.reason ? c->rs->head.reason : "malformed request");
		return;
	}
	copy_method(c);
	c->is_connect = eg_slice_ieq(c->rs->head.method, "CONNECT");
	const char *why = NULL;
	if (eg_http_parse_target(c->rs->head.target.p, c->rs->head.target.n, c->is_connect, &c->target, &why) < 0) {
		c->target.host[0] = '\0';
		eg_conn_send_error(c, 400, why);
		return;
	}
	if (c->target.path.p) {
		/* NUL-terminated copy of the path for Lua, and its length without the query for logs */
		size_t s = c->target.path_slash ? 1 : 0, cap = sizeof(c->rs->path_copy) - 1 - s;
		size_t n = c->target.path.n < cap ? c->target.path.n : cap;
		c->rs->path_copy[0] = '/';
		memcpy(c->rs->path_copy + s, c->target.path.p, n);
		n += s;
		c->rs->path_copy[n] = '\0';
		char *q = strchr(c->rs->path_copy, '?');
		c->path_len_noquery = q ? (size_t)(q - c->rs->path_copy) : n;
	}
	if (c->rs->head.has_upgrade) {
		eg_conn_send_error(c, 501, "protocol upgrade is not supported (HTTP/1.1 only)");
		return;
	}
	if (c->target.form == EG_TARGET_ORIGIN || c->target.form == EG_TARGET_ASTERISK) {
		struct eg_policy *p = c->srv->policy;
		const struct eg_route *rt = c->target.form == EG_TARGET_ORIGIN ?
			eg_policy_route(p, c->target.path.p, c->target.path.n) : NULL;
		c->target.host[0] = '\0';
		if (rt && rt->served_by[0]) {
			/* EST and CMP have listeners of their own: say which, rather than pretend */
			char msg[200];
			snprintf(msg, sizeof(msg), "protocol '%s' is served by %s, not on the proxy port", rt->protocol,
				 rt->served_by);
			eg_conn_send_error(c, 421, msg);
		} else if (rt) {
			char msg[128];
			snprintf(msg, sizeof(msg), "protocol '%s' has no handler in this version", rt->protocol);
			eg_conn_send_error(c, 501, msg);
		} else {
			eg_conn_send_error(c, 404, "no such endpoint: this is a forward proxy (use an absolute URI or CONNECT)");
		}
		return;
	}
	if (c->target.https) {
		eg_conn_send_error(c, 400, "https:// targets must use CONNECT");
		return;
	}
	/* the policy generation that decides this request stays with it until it ends */
	c->pol = eg_server_policy(c->srv);
	c->gen = c->pol->generation;
	struct eg_request_info ri = {
		.method = c->method, .host = c->target.host, .host_is_ip = c->target.host_is_ip, .port = c->target.port,
		.path = c->is_connect ? NULL : c->rs->path_copy, .client = c->client, .head = &c->rs->head,
	};
	eg_policy_decide(c->pol, &ri, &c->verdict);
	if (!c->verdict.allow) {
		eg_log(EG_LOG_DEBUG, "deny", "%s %s:%u: %s", c->method, c->target.host, c->target.port, c->verdict.reason);
		eg_conn_send_error(c, c->verdict.status ? c->verdict.status : 403, c->verdict.reason);
		return;
	}
	/* reading goes on (no epoll_ctl per request); what a pipelining client sends next waits,
	 * bounded by the watermark, until eg_px_await_head */
	bufferevent_setwatermark(c->cbev, EV_READ, 0, PIPELINE_HOLD);
	if (!c->is_connect && c->ubev && c->up_reusable && strcmp(c->up_host, dest_host(c)) == 0 &&
	    c->up_port == dest_port(c)) {
		/* kept-alive upstream: same destination; re-check its address under this generation */
		eg_policy_check_addr(c->pol, (struct sockaddr *)&c->up_addr, dest_port(c), &c->verdict);
		if (!c->verdict.allow) {
			eg_conn_send_error(c, c->verdict.status, c->verdict.reason);
			return;
		}
		c->up_reused = 1;
		eg_conn_start_forward(c);
		return;
	}
	eg_px_release_upstream(c);
	/* a shared connection only for a request that can be sent again should it turn out closed */
	if (!c->is_connect && c->rs->head.body == EG_BODY_NONE && eg_px_safe_to_resend(c) &&
	    (c->ubev = eg_origin_pool_take(c->srv->origins, dest_host(c), dest_port(c), &c->up_addr, &c->up_addrlen))) {
		/* an idle connection another client left: the same checks as a kept-alive one */
		snprintf(c->up_host, sizeof(c->up_host), "%s", dest_host(c));
		c->up_port = dest_port(c);
		c->up_reusable = 1;
		c->up_private = 0;
		c->up_reused = 1;
		eg_policy_check_addr(c->pol, (struct sockaddr *)&c->up_addr, dest_port(c), &c->verdict);
		if (!c->verdict.allow) {
			eg_px_free_upstream(c);
			eg_conn_send_error(c, c->verdict.status, c->verdict.reason);
			return;
		}
		eg_conn_start_forward(c);
		return;
	}
	eg_px_resolve_and_connect(c);
}

/* ---- resolution and connect ---- */


static void dns_cb(int err, struct evutil_addrinfo *ai, void *arg)
{
	struct eg_conn *c = arg;
	if (err == EVUTIL_EAI_CANCEL)
		return; /* the connection is gone */
	c->dns_req = NULL;
	if (err) {
		char msg[160];
		snprintf(msg, sizeof(msg), "cannot resolve %.100s: %s", dest_host(c), evutil_gai_strerror(err));
		eg_conn_send_error(c, 502, msg);
		return;
	}
	c->ai = ai;
	c->ai_next = ai;
	eg_px_connect_next(c);
}

void eg_px_resolve_and_connect(struct eg_conn *c)
{
	const struct eg_settings *s = &c->pol->settings;
	struct evutil_addrinfo hints;
	char port[8];
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_ADDRCONFIG;
	if (dest_is_ip(c))
		hints.ai_flags = EVUTIL_AI_NUMERICHOST;
	snprintf(port, sizeof(port), "%u", dest_port(c));
	c->state = EG_ST_RESOLVING;
	eg_px_arm_timer(c, s->dns_timeout);
	struct evdns_getaddrinfo_request *req = evdns_getaddrinfo(c->srv->dns, dest_host(c), port, &hints, dns_cb, c);
	/* the callback may already have run (numeric host, hosts file, cache) */
	if (req && c->state == EG_ST_RESOLVING && !c->ai)
		c->dns_req = req;
}

void eg_px_connect_next(struct eg_conn *c)
{
	const struct eg_settings *s = &c->pol->settings;
	struct eg_verdict first_denial = { 0 };
	int have_denial = 0;
	for (; c->ai_next; c->ai_next = c->ai_next->ai_next) {
		struct evutil_addrinfo *a = c->ai_next;
		struct eg_verdict v = c->verdict;
		eg_policy_check_addr(c->pol, a->ai_addr, dest_port(c), &v);
		if (!v.allow) {
			if (!have_denial) {
				first_denial = v;
				have_denial = 1;
			}
			continue;
		}
		c->verdict = v;
		memcpy(&c->up_addr, a->ai_addr, a->ai_addrlen);
		c->up_addrlen = (int)a->ai_addrlen;
		c->ai_next = a->ai_next;
		c->ubev = bufferevent_socket_new(c->srv->base, -1, BEV_OPT_CLOSE_ON_FREE);
		if (!c->ubev) {
			eg_conn_send_error(c, 500, "out of resources");
			return;
		}
		eg_bev_tune(c->ubev);
		bufferevent_setcb(c->ubev, eg_px_upstream_read_cb, NULL, eg_px_upstream_event_cb, c);
		c->up_reused = 0;
		c->up_private = 0;
		c->state = EG_ST_CONNECTING;
		eg_px_arm_timer(c, s->connect_timeout);
		if (bufferevent_socket_connect(c->ubev, (struct sockaddr *)&c->up_addr, c->up_addrlen) < 0) {
			eg_px_free_upstream(c);
			continue;
		}
		return;
	}
	if (have_denial) {
		c->verdict = first_denial;
		eg_conn_send_error(c, first_denial.status, first_denial.reason);
	} else {
		c->verdict.allow = 1;
		eg_conn_send_error(c, 502, "upstream refused the connection");
	}
}

void eg_px_upstream_connected(struct eg_conn *c)
{
	evtimer_del(c->timer);
	int one = 1;
	setsockopt(bufferevent_getfd(c->ubev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	snprintf(c->up_host, sizeof(c->up_host), "%s", dest_host(c));
	c->up_port = dest_port(c);
	if (c->ai) {
		evutil_freeaddrinfo(c->ai);
		c->ai = NULL;
		c->ai_next = NULL;
	}
	if (c->is_connect)
		eg_tunnel_start(c);
	else
		eg_conn_start_forward(c);
}
