/* upstream.c: a relay's requests to its upstream servers (failover, health memory, connection
 * pool, timeouts); see upstream.h. One evhttp_connection per pooled connection, over
 * bufferevent_openssl for https. */
#include "upstream.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/keyvalq_struct.h>
#include <openssl/x509v3.h>

#include "http_reply.h"
#include "log.h"
#include "origin_pool.h"

#define POOL_SLOTS 32
#define POOL_IDLE 30.0             /* seconds an idle upstream connection is kept */
#define HEALTH_SLOTS 64

struct upstream_health {
	char url[512];
	double down_until;             /* monotonic seconds; 0 = healthy */
};

/* A kept-alive connection, made with one generation's client context: a reload with a new
 * context (identity, trust) makes new ones. */
struct pooled_conn {
	struct evhttp_connection *conn; /* NULL: free slot */
	struct eg_upstreams *u;
	char url[512];
	SSL_CTX *ctx;                  /* a reference to the context it was made with (NULL: http) */
	int busy;
	int dead;                      /* closed while busy: dropped when its request ends */
	double idle_since;
	evutil_socket_t nodelay_fd;    /* the socket TCP_NODELAY was set on (-1: none yet) */
};

struct eg_upstreams {
	struct event_base *base;
	struct evdns_base *dns;
	char area[16];
	char agent[48];
	struct pooled_conn pool[POOL_SLOTS];
	struct upstream_health health[HEALTH_SLOTS];
};

/* One request on its way through the upstreams. */
struct upstream_req {
	struct eg_upstreams *u;
	struct eg_upstream_target t;
	enum evhttp_cmd_type method;
	char suffix[256];
	int exact;                     /* no suffix: the configured path as it is */
	char hdr[EG_UPSTREAM_MAX_HEADERS][2][256];
	int nhdr;
	struct evbuffer *body;         /* NULL: none */
	eg_upstream_cb cb;
	void *arg;
	int next_up;
	int tried;
	int tried_down;                /* an upstream marked down was tried as the last resort */
	int fresh_retry;               /* a stale kept-alive connection was retried fresh */
	int reused;                    /* the attempt went over a kept-alive connection */
	enum { SETUP_OK, SETUP_TCP, SETUP_TLS } setup_timeout; /* what did not finish in time */
	double attempt_start;          /* when the new connection of this attempt was started */
	double tcp_up_at;              /* when its TCP connection was first seen established, or 0 */
	int answer_started;            /* the attempt's response head has come in */
	int uerr_set;
	enum evhttp_request_error uerr;
	struct evhttp_connection *uconn;  /* the attempt in progress */
	struct pooled_conn *slot;      /* its pool slot, or NULL (unpooled: freed after use) */
	struct evhttp_request *ureq;   /* the upstream request in flight */
	struct event *connect_timer;
	char upstream[512];
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct timeval to_tv(double s)
{
	struct timeval tv = { (time_t)s, (suseconds_t)((s - floor(s)) * 1e6) };
	return tv;
}

static void set_nodelay(evutil_socket_t fd)
{
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int eg_upstream_parse(const char *s, int allow_plain, struct eg_upstream *u)
{
	struct evhttp_uri *uri = evhttp_uri_parse(s);
	if (!uri)
		return -1;
	const char *scheme = evhttp_uri_get_scheme(uri), *host = evhttp_uri_get_host(uri);
	const char *path = evhttp_uri_get_path(uri);
	int port = evhttp_uri_get_port(uri);
	int tls = scheme && strcmp(scheme, "https") == 0;
	int ok = scheme && (tls || (allow_plain && strcmp(scheme, "http") == 0)) && host && host[0] &&
		 strlen(host) < sizeof(u->host) && !evhttp_uri_get_query(uri) && !evhttp_uri_get_fragment(uri) &&
		 !evhttp_uri_get_userinfo(uri) && strlen(s) < sizeof(u->url) && (!path || strlen(path) < sizeof(u->path));
	if (ok) {
		memset(u, 0, sizeof(*u));
		snprintf(u->url, sizeof(u->url), "%s", s);
		/* evhttp_uri keeps the brackets of an IPv6 literal: the address goes without them */
		size_t hl = strlen(host);
		if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
			snprintf(u->host, sizeof(u->host), "%.*s", (int)(hl - 2), host + 1);
		else
			snprintf(u->host, sizeof(u->host), "%s", host);
		u->tls = tls;
		u->port = (uint16_t)(port > 0 ? port : tls ? 443 : 80);
		snprintf(u->path, sizeof(u->path), "%s", path ? path : "");
		snprintf(u->exact_path, sizeof(u->exact_path), "%s", path && path[0] ? path : "/");
		size_t l = strlen(u->path);
		while (l > 0 && u->path[l - 1] == '/')
			u->path[--l] = '\0';
	}
	evhttp_uri_free(uri);
	return ok ? 0 : -1;
}

struct eg_upstreams *eg_upstreams_new(struct event_base *base, struct evdns_base *dns, const char *area,
				      const char *user_agent)
{
	struct eg_upstreams *u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->base = base;
	u->dns = dns;
	snprintf(u->area, sizeof(u->area), "%s", area);
	snprintf(u->agent, sizeof(u->agent), "%s", user_agent);
	return u;
}

void eg_upstreams_free(struct eg_upstreams *u)
{
	if (!u)
		return;
	for (int i = 0; i < POOL_SLOTS; i++) {
		if (u->pool[i].conn) {
			evhttp_connection_set_closecb(u->pool[i].conn, NULL, NULL);
			evhttp_connection_free(u->pool[i].conn);
			SSL_CTX_free(u->pool[i].ctx);
		}
	}
	free(u);
}

/* ---- health ---- */

static struct upstream_health *health_of(struct eg_upstreams *u, const char *url, int create)
{
	struct upstream_health *free_slot = NULL, *oldest = &u->health[0];
	for (int i = 0; i < HEALTH_SLOTS; i++) {
		struct upstream_health *h = &u->health[i];
		if (strcmp(h->url, url) == 0)
			return h;
		if (!h->url[0] && !free_slot)
			free_slot = h;
		if (h->down_until < oldest->down_until)
			oldest = h;
	}
	if (!create)
		return NULL;
	struct upstream_health *h = free_slot ? free_slot : oldest;
	snprintf(h->url, sizeof(h->url), "%s", url);
	h->down_until = 0;
	return h;
}

static void mark_down(struct upstream_req *r, const char *url)
{
	health_of(r->u, url, 1)->down_until = mono() + r->t.down_hold;
}

/* ---- pool ---- */

static void free_conn_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	evhttp_connection_free(arg);
}

/* evhttp must not free a connection from inside its own callbacks: next loop pass. */
static void free_conn_later(struct eg_upstreams *u, struct evhttp_connection *conn)
{
	struct timeval zero = { 0, 0 };
	evhttp_connection_set_closecb(conn, NULL, NULL);
	if (event_base_once(u->base, -1, EV_TIMEOUT, free_conn_cb, conn, &zero) < 0)
		eg_log(EG_LOG_ERROR, u->area, "cannot schedule an upstream connection's release (leaked)");
}

static void pool_drop(struct pooled_conn *s)
{
	free_conn_later(s->u, s->conn);
	SSL_CTX_free(s->ctx);
	memset(s, 0, sizeof(*s));
}

/* The server closed a kept-alive connection (evhttp cannot reconnect one over TLS). */
static void pool_closecb(struct evhttp_connection *conn, void *arg)
{
	struct pooled_conn *s = arg;
	(void)conn;
	if (s->busy)
		s->dead = 1;
	else
		pool_drop(s);
}

/* An idle connection to url made with ctx, marked busy; NULL if none. Expires idle ones and
 * drops the ones the server has closed meanwhile. */
static struct pooled_conn *pool_acquire(struct eg_upstreams *u, const char *url, SSL_CTX *ctx)
{
	double now = mono();
	struct pooled_conn *found = NULL;
	for (int i = 0; i < POOL_SLOTS; i++) {
		struct pooled_conn *s = &u->pool[i];
		if (!s->conn || s->busy)
			continue;
		if (now - s->idle_since > POOL_IDLE || s->dead)
			pool_drop(s);
		else if (!found && s->ctx == ctx && strcmp(s->url, url) == 0) {
			if (eg_idle_conn_alive(evhttp_connection_get_bufferevent(s->conn)))
				found = s;
			else
				pool_drop(s);
		}
	}
	if (found)
		found->busy = 1;
	return found;
}

/* Put a new connection in the pool (busy), evicting the longest idle one if full. NULL when
 * every slot is busy: the connection then lives for one request. */
static struct pooled_conn *pool_adopt(struct eg_upstreams *u, struct evhttp_connection *conn, const char *url,
				      SSL_CTX *ctx)
{
	struct pooled_conn *s = NULL;
	for (int i = 0; i < POOL_SLOTS && !s; i++)
		if (!u->pool[i].conn)
			s = &u->pool[i];
	for (int i = 0; i < POOL_SLOTS && !s; i++)
		if (!u->pool[i].busy && (!s || u->pool[i].idle_since < s->idle_since))
			s = &u->pool[i];
	if (!s || (ctx && SSL_CTX_up_ref(ctx) != 1))
		return NULL;
	if (s->conn)
		pool_drop(s);
	s->conn = conn;
	s->u = u;
	snprintf(s->url, sizeof(s->url), "%s", url);
	s->ctx = ctx;
	s->busy = 1;
	s->nodelay_fd = -1;
	evhttp_connection_set_closecb(conn, pool_closecb, s);
	return s;
}

/* The attempt is over: a healthy pooled connection goes back to the pool, anything else is
 * freed. */
static void release_conn(struct upstream_req *r, int healthy)
{
	struct pooled_conn *s = r->slot;
	if (s) {
		if (healthy && !s->dead) {
			s->busy = 0;
			s->idle_since = mono();
			/* evhttp creates the socket inside its connect: the first request went without it */
			evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(s->conn));
			if (fd != s->nodelay_fd) {
				set_nodelay(fd);
				s->nodelay_fd = fd;
			}
		} else {
			pool_drop(s);
		}
	} else if (r->uconn) {
		free_conn_later(r->u, r->uconn);
	}
	r->slot = NULL;
	r->uconn = NULL;
}

/* ---- attempts ---- */

static void try_next(struct upstream_req *r);

/* The end of the request: the caller's callback, then everything goes. */
static void finish(struct upstream_req *r, enum eg_upstream_result result, struct evhttp_request *answer)
{
	struct eg_upstream_reply rep = { .result = result, .answer = answer, .upstream = r->upstream, .tried = r->tried };
	r->cb(&rep, r->arg);
	if (r->connect_timer)
		event_free(r->connect_timer);
	if (r->body)
		evbuffer_free(r->body);
	free(r);
}

static void error_cb(enum evhttp_request_error err, void *arg)
{
	struct upstream_req *r = arg;
	r->uerr = err;
	r->uerr_set = 1;
}

/* evhttp has read the head of the response: from here a failure is a broken answer. */
static int header_cb(struct evhttp_request *ureq, void *arg)
{
	(void)ureq;
	((struct upstream_req *)arg)->answer_started = 1;
	return 0;
}

static const char *error_text(const struct upstream_req *r)
{
	if (r->setup_timeout != SETUP_OK)
		return r->setup_timeout == SETUP_TLS ? "did not complete the TLS handshake in time"
						     : "did not complete the TCP connection in time";
	if (!r->uerr_set)
		return "connection or TLS handshake failed";
	switch (r->uerr) {
	case EVREQ_HTTP_TIMEOUT: return "timed out";
	case EVREQ_HTTP_EOF: return "closed the connection";
	case EVREQ_HTTP_INVALID_HEADER: return "sent a malformed response";
	case EVREQ_HTTP_BUFFER_ERROR: return "connection or TLS handshake failed";
	case EVREQ_HTTP_DATA_TOO_LONG: return "sent too large a response";
	default: return "failed";
	}
}

static void done_cb(struct evhttp_request *ureq, void *arg)
{
	struct upstream_req *r = arg;
	const struct eg_upstream *up = &r->t.up[r->next_up - 1];
	int code = ureq ? evhttp_request_get_response_code(ureq) : 0;
	int timed_out = r->uerr_set && r->uerr == EVREQ_HTTP_TIMEOUT;
	r->ureq = NULL;
	if (r->connect_timer)
		evtimer_del(r->connect_timer);
	release_conn(r, code != 0);
	if (code == 0 && r->answer_started && r->body) {
		/* it answered, then failed: the request has been acted on, so it goes nowhere else (a
		 * request without a body, a GET, is asked of the next upstream as any failure is) */
		eg_log(EG_LOG_WARN, r->u->area, "upstream %s %s while sending its answer", up->url, error_text(r));
		finish(r, EG_UPSTREAM_BROKEN_ANSWER, NULL);
		return;
	}
	if (code == 0 && r->reused && !r->fresh_retry && !timed_out) {
		/* a kept-alive connection the server had given up on: the same upstream once more, fresh */
		r->fresh_retry = 1;
		r->next_up--;
		try_next(r);
		return;
	}
	if (code == 0) {
		mark_down(r, up->url);
		eg_log(EG_LOG_WARN, r->u->area, "upstream %s %s; skipped for %.0f s", up->url, error_text(r), r->t.down_hold);
		if (timed_out && r->body) {
			/* the server has the request and may act on it: not sent to another one */
			finish(r, EG_UPSTREAM_NO_ANSWER, NULL);
			return;
		}
		try_next(r);
		return;
	}
	struct upstream_health *h = health_of(r->u, up->url, 0);
	if (h)
		h->down_until = 0;
	finish(r, EG_UPSTREAM_ANSWERED, ureq);
}

#define SETUP_POLL 0.1               /* seconds between checks of a connection being set up */

static void arm_setup_timer(struct upstream_req *r, double s)
{
	struct timeval tv = to_tv(s < SETUP_POLL ? s : SETUP_POLL);
	evtimer_add(r->connect_timer, &tv);
}

/* A new connection must finish its TCP connection within connect_timeout and then its TLS
 * handshake within tls_timeout; evhttp reports neither step, so they are checked every
 * SETUP_POLL seconds (the handshake's clock starts when the TCP connection is first seen, up to
 * SETUP_POLL late). Nothing has been delivered then, so another upstream may be asked. */
static void connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct upstream_req *r = arg;
	(void)fd;
	(void)what;
	if (!r->ureq || !r->uconn)
		return;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(r->uconn);
	SSL *ssl = bufferevent_openssl_get_ssl(bev);
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int tcp_up = bufferevent_getfd(bev) >= 0 && getpeername(bufferevent_getfd(bev), (struct sockaddr *)&ss, &sl) == 0;
	if (tcp_up && (!ssl || SSL_is_init_finished(ssl)))
		return; /* the response timeout governs from here */
	double now = mono(), limit;
	if (tcp_up && r->tcp_up_at == 0)
		r->tcp_up_at = now;
	if (!tcp_up && now - r->attempt_start >= r->t.connect_timeout) {
		r->setup_timeout = SETUP_TCP;
		limit = r->t.connect_timeout;
	} else if (tcp_up && now - r->tcp_up_at >= r->t.tls_timeout) {
		r->setup_timeout = SETUP_TLS;
		limit = r->t.tls_timeout;
	} else {
		arm_setup_timer(r, tcp_up ? r->t.tls_timeout - (now - r->tcp_up_at)
					  : r->t.connect_timeout - (now - r->attempt_start));
		return;
	}
	const struct eg_upstream *up = &r->t.up[r->next_up - 1];
	mark_down(r, up->url);
	eg_log(EG_LOG_WARN, r->u->area, "upstream %s did not complete the %s in %.1f s; skipped for %.0f s", up->url,
	       r->setup_timeout == SETUP_TLS ? "TLS handshake" : "TCP connection", limit, r->t.down_hold);
	evhttp_cancel_request(r->ureq); /* no callback; the connection is reset */
	r->ureq = NULL;
	release_conn(r, 0);
	try_next(r);
}

SSL *eg_upstream_ssl(SSL_CTX *ctx, const struct eg_upstream *up, int verify_name)
{
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	if (!ssl)
		return NULL;
	struct in6_addr a6;
	struct in_addr a4;
	int is_ip = inet_pton(AF_INET, up->host, &a4) == 1 || inet_pton(AF_INET6, up->host, &a6) == 1;
	if (!is_ip)
		SSL_set_tlsext_host_name(ssl, up->host);
	if (verify_name) {
		X509_VERIFY_PARAM *vp = SSL_get0_param(ssl);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, up->host) != 1 : X509_VERIFY_PARAM_set1_host(vp, up->host, 0) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	}
	return ssl;
}

/* A new connection to up (not yet connected), or NULL. */
static struct evhttp_connection *connect_to(struct upstream_req *r, const struct eg_upstream *up)
{
	struct bufferevent *bev;
	if (up->tls) {
		SSL *ssl = eg_upstream_ssl(r->t.client_ctx, up, r->t.verify_name);
		bev = ssl ? bufferevent_openssl_socket_new(r->u->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
							   BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
			  : NULL;
		if (!bev) {
			SSL_free(ssl);
			return NULL;
		}
		bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	} else {
		bev = bufferevent_socket_new(r->u->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
		if (!bev)
			return NULL;
	}
	struct evhttp_connection *conn = evhttp_connection_base_bufferevent_new(r->u->base, r->u->dns, bev, up->host, up->port);
	if (!conn) {
		bufferevent_free(bev);
		return NULL;
	}
	struct timeval tv = to_tv(r->t.response_timeout);
	evhttp_connection_set_timeout_tv(conn, &tv);
	evhttp_connection_set_retries(conn, 0);
	evhttp_connection_set_max_body_size(conn, (ev_ssize_t)r->t.max_answer);
	return conn;
}

/* Send the request to the next upstream that is not marked down; DOWN when none is left. */
static void try_next(struct upstream_req *r)
{
	struct eg_upstreams *u = r->u;
	double now = mono();
	while (r->next_up < r->t.nup) {
		const struct eg_upstream *up = &r->t.up[r->next_up++];
		struct upstream_health *h = health_of(u, up->url, 0);
		if (h && h->down_until > now)
			continue;
		struct evhttp_request *ureq = evhttp_request_new(done_cb, r);
		if (!ureq)
			continue;
		SSL_CTX *ctx = up->tls ? r->t.client_ctx : NULL;
		struct pooled_conn *slot = r->fresh_retry ? NULL : pool_acquire(u, up->url, ctx);
		struct evhttp_connection *conn = slot ? slot->conn : NULL;
		r->reused = slot != NULL;
		if (!conn) {
			conn = connect_to(r, up);
			if (!conn) {
				evhttp_request_free(ureq);
				continue;
			}
			slot = pool_adopt(u, conn, up->url, ctx);
		}
		evhttp_request_set_error_cb(ureq, error_cb);
		evhttp_request_set_header_cb(ureq, header_cb);
		r->uerr_set = 0;
		r->answer_started = 0;
		struct evkeyvalq *oh = evhttp_request_get_output_headers(ureq);
		char hosthdr[300], path[520];
		if ((up->tls && up->port == 443) || (!up->tls && up->port == 80))
			snprintf(hosthdr, sizeof(hosthdr), strchr(up->host, ':') ? "[%s]" : "%s", up->host);
		else
			snprintf(hosthdr, sizeof(hosthdr), strchr(up->host, ':') ? "[%s]:%u" : "%s:%u", up->host, up->port);
		evhttp_add_header(oh, "Host", hosthdr);
		evhttp_add_header(oh, "User-Agent", u->agent);
		for (int i = 0; i < r->nhdr; i++)
			evhttp_add_header(oh, r->hdr[i][0], r->hdr[i][1]);
		if (r->body)
			evbuffer_add(evhttp_request_get_output_buffer(ureq), evbuffer_pullup(r->body, -1),
				     evbuffer_get_length(r->body));
		if (r->exact)
			snprintf(path, sizeof(path), "%s", up->exact_path);
		else
			snprintf(path, sizeof(path), "%s%s", up->path, r->suffix);
		if (!path[0])
			snprintf(path, sizeof(path), "/");
		snprintf(r->upstream, sizeof(r->upstream), "%s", up->url);
		r->tried++;
		r->uconn = conn;
		r->slot = slot;
		r->setup_timeout = SETUP_OK;
		r->attempt_start = mono();
		r->tcp_up_at = 0;
		int was_empty = eg_http_pending(conn) == 0;
		if (evhttp_make_request(conn, ureq, r->method, path) == 0) {
			if (r->uconn == conn) { /* (a failure may have been reported synchronously) */
				/* (on a new connection the request waits until it is connected) */
				if (r->reused)
					eg_http_one_record(conn, was_empty);
				r->ureq = ureq;
				if (!r->reused && (r->connect_timer ||
						   (r->connect_timer = evtimer_new(u->base, connect_timeout_cb, r))))
					arm_setup_timer(r, r->t.connect_timeout);
			}
			return;
		}
		/* libevent 2.1 leaves ureq neither sent nor freed here; freeing it ourselves could race
		 * with a failure callback, so it is left (a rare, small leak); the connection is ours */
		release_conn(r, 0);
	}
	/* every upstream is marked down: the one marked longest ago gets one more chance, so that a
	 * single failure does not refuse every request for down_hold seconds */
	if (!r->tried && !r->tried_down && r->t.nup > 0) {
		int best = 0;
		for (int i = 1; i < r->t.nup; i++) {
			struct upstream_health *hi = health_of(u, r->t.up[i].url, 0), *hb = health_of(u, r->t.up[best].url, 0);
			if (hi && hb && hi->down_until < hb->down_until)
				best = i;
		}
		struct upstream_health *hb = health_of(u, r->t.up[best].url, 0);
		r->tried_down = 1;
		r->next_up = best;
		if (hb)
			hb->down_until = 0;
		try_next(r);
		return;
	}
	finish(r, EG_UPSTREAM_DOWN, NULL);
}

void eg_upstream_send(struct eg_upstreams *u, const struct eg_upstream_target *t, enum evhttp_cmd_type method,
		      const char *suffix, const char *const *headers, const void *body, size_t len,
		      eg_upstream_cb cb, void *arg)
{
	struct upstream_req *r = calloc(1, sizeof(*r));
	if (!r || (body && !(r->body = evbuffer_new())) || (body && evbuffer_add(r->body, body, len) < 0)) {
		if (r && r->body)
			evbuffer_free(r->body);
		free(r);
		struct eg_upstream_reply rep = { .result = EG_UPSTREAM_DOWN, .upstream = "", .tried = 0 };
		cb(&rep, arg);
		return;
	}
	r->u = u;
	r->t = *t;
	r->method = method;
	snprintf(r->suffix, sizeof(r->suffix), "%s", suffix ? suffix : "");
	r->exact = suffix == NULL;
	for (int i = 0; headers && headers[i] && headers[i + 1] && r->nhdr < EG_UPSTREAM_MAX_HEADERS; i += 2, r->nhdr++) {
		snprintf(r->hdr[r->nhdr][0], sizeof(r->hdr[0][0]), "%s", headers[i]);
		snprintf(r->hdr[r->nhdr][1], sizeof(r->hdr[0][1]), "%s", headers[i + 1]);
	}
	r->cb = cb;
	r->arg = arg;
	try_next(r);
}
