/* forward.c: relaying one request of a forward-proxy connection and its response: the request
 * head rewritten for the origin, bodies both ways with back-pressure, large response bodies
 * through splice(2), the response head, and what the upstream connection reports. The
 * connection's life around it is proxy.c's (proxy_int.h). */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "log.h"
#include "pipe_relay.h"
#include "proxy_int.h"

#define MAX_RESPONSE_HEAD (64 * 1024)

static void response_complete(struct eg_conn *c);
static void upstream_write_cb(struct bufferevent *bev, void *arg);

static int is_hop_header(const struct eg_header *h)
{
	return h->hop_by_hop;
}

/* Write the origin-form request head upstream. */
static void write_request_head(struct eg_conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->ubev);
	struct eg_http_head *h = &c->rs->head;
	char line[64];
	evbuffer_add(out, h->method.p, h->method.n);
	evbuffer_add(out, c->target.path_slash ? " /" : " ", c->target.path_slash ? 2 : 1);
	evbuffer_add(out, c->target.path.p, c->target.path.n);
	evbuffer_add(out, h->version_minor ? " HTTP/1.1\r\nHost: " : " HTTP/1.0\r\nHost: ", 17);
	/* Host always names the target of the absolute URI (RFC 9112 §3.2.2) */
	if (c->target.host_is_ip == 6)
		evbuffer_add_printf(out, "[%s]", c->target.host);
	else
		evbuffer_add(out, c->target.host, strlen(c->target.host));
	if (c->target.port != 80) {
		int n = snprintf(line, sizeof(line), ":%u", c->target.port);
		evbuffer_add(out, line, (size_t)n);
	}
	evbuffer_add(out, "\r\n", 2);
	for (int i = 0; i < h->nheaders; i++) {
		const struct eg_header *hd = &h->headers[i];
		if (is_hop_header(hd) || i == h->host_idx || eg_slice_ieq(hd->name, "via"))
			continue;
		evbuffer_add(out, hd->name.p, hd->name.n);
		evbuffer_add(out, ": ", 2);
		evbuffer_add(out, hd->value.p, hd->value.n);
		evbuffer_add(out, "\r\n", 2);
	}
	for (int i = 0; i < h->nheaders; i++) {
		if (eg_slice_ieq(h->headers[i].name, "via")) {
			evbuffer_add(out, "Via: ", 5);
			evbuffer_add(out, h->headers[i].value.p, h->headers[i].value.n);
			evbuffer_add(out, ", ", 2);
			evbuffer_add(out, h->version_minor ? "1.1 enrollgate\r\n\r\n" : "1.0 enrollgate\r\n\r\n", 18);
			return;
		}
	}
	evbuffer_add(out, h->version_minor ? "Via: 1.1 enrollgate\r\n\r\n" : "Via: 1.0 enrollgate\r\n\r\n", 23);
}

void eg_conn_start_forward(struct eg_conn *c)
{
	const struct eg_settings *s = &c->pol->settings;
	c->state = EG_ST_FORWARDING;
	c->req_body = c->rs->head.body;
	c->req_remaining = c->rs->head.content_length;
	eg_chunked_init(&c->req_chunk);
	c->req_done = c->req_body == EG_BODY_NONE;
	c->resp_head_done = 0;
	c->resp_done = 0;
	c->client_close = c->rs->head.conn_close || c->cbev_eof;
	c->up_idle = 0;
	for (int i = 0; i < c->rs->head.nheaders && !c->up_private; i++)
		if (eg_slice_ieq(c->rs->head.headers[i].name, "authorization"))
			c->up_private = 1; /* a login may be bound to the connection (NTLM, Negotiate) */
	bufferevent_setcb(c->ubev, eg_px_upstream_read_cb, upstream_write_cb, eg_px_upstream_event_cb, c);
	bufferevent_setwatermark(c->ubev, EV_WRITE, HIGH_WATER / 2, 0);
	bufferevent_setwatermark(c->ubev, EV_READ, 0, 0);
	write_request_head(c);
	bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
	if (c->req_done)
		eg_bev_flush_now(c->ubev); /* nobody waits for its write callback */
	eg_px_arm_timer(c, s->response_timeout);
	if (!c->req_done) {
		struct timeval idle;
		eg_px_set_tv(&idle, s->idle_timeout);
		bufferevent_set_timeouts(c->cbev, &idle, NULL); /* a client stalling mid-body */
		bufferevent_enable(c->cbev, EV_READ);
		eg_conn_pump_request(c);
	}
}

/* How much of in belongs to the body being relayed, framed as kind (remaining: the bytes a
 * Content-Length body still has; chunk: the chunked scanner's state, advanced here). *n gets that
 * many bytes; nothing is moved. EG_CHUNK_DONE when the body ends within them, EG_CHUNK_MORE, or
 * EG_CHUNK_ERROR for malformed chunking (*n: the valid bytes before the error). At most 8 buffer
 * segments are scanned per call; the rest waits for the next read. */
static enum eg_chunk_result body_span(struct evbuffer *in, enum eg_body_kind kind, uint64_t remaining,
				      struct eg_chunked *chunk, size_t *n)
{
	size_t avail = evbuffer_get_length(in);
	*n = 0;
	switch (kind) {
	case EG_BODY_LENGTH:
		*n = avail < remaining ? avail : (size_t)remaining;
		return *n == remaining ? EG_CHUNK_DONE : EG_CHUNK_MORE;
	case EG_BODY_CHUNKED: {
		struct evbuffer_iovec v[8];
		int nv = evbuffer_peek(in, -1, NULL, v, 8);
		enum eg_chunk_result r = EG_CHUNK_MORE;
		for (int i = 0; i < nv && i < 8 && r == EG_CHUNK_MORE; i++) {
			size_t used = 0;
			r = eg_chunked_feed(chunk, v[i].iov_base, v[i].iov_len, &used);
			*n += used;
		}
		return r;
	}
	case EG_BODY_UNTIL_CLOSE:
		*n = avail;
		return EG_CHUNK_MORE;
	default:
		return EG_CHUNK_DONE;
	}
}

/* Move body bytes of the current request from the client to the upstream. */
void eg_conn_pump_request(struct eg_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	struct evbuffer *out = bufferevent_get_output(c->ubev);
	if (c->req_done || !c->ubev)
		return;
	size_t n;
	enum eg_chunk_result r = body_span(in, c->req_body, c->req_remaining, &c->req_chunk, &n);
	if (r == EG_CHUNK_ERROR) {
		eg_conn_send_error(c, 400, "malformed chunked request body");
		return;
	}
	evbuffer_remove_buffer(in, out, n);
	c->bytes_in += n;
	if (c->req_body == EG_BODY_LENGTH)
		c->req_remaining -= n;
	if (r == EG_CHUNK_DONE)
		c->req_done = 1;
	if (c->req_done) {
		/* the stalled-upload timer must not cut a response that takes its time */
		bufferevent_set_timeouts(c->cbev, NULL, NULL);
		return; /* pipelined requests wait their turn in the input buffer */
	}
	if (evbuffer_get_length(out) >= HIGH_WATER)
		bufferevent_disable(c->cbev, EV_READ); /* upstream is slow: stop reading the client */
}

static void upstream_write_cb(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_FORWARDING && !c->req_done)
		bufferevent_enable(c->cbev, EV_READ);
}

static void maybe_splice_body(struct eg_conn *c);

static void client_write_cb(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_FORWARDING && c->ubev && !c->body_splice) {
		bufferevent_enable(c->ubev, EV_READ);
		maybe_splice_body(c);
	}
}

/* ---- large response bodies through splice(2) ---- */

#define SPLICE_MIN_BODY (64 * 1024) /* smaller bodies are not worth a pipe */

void eg_px_body_splice_end(struct eg_conn *c)
{
	if (!c->body_splice)
		return;
	eg_pipe_relay_free(c->body_splice);
	free(c->body_splice);
	c->body_splice = NULL;
}

/* The body ended early (upstream end, error or stall): the client must see the connection end. */
static void body_truncated(struct eg_conn *c, const char *why)
{
	eg_px_body_splice_end(c);
	snprintf(c->deny_reason, sizeof(c->deny_reason), "response body cut short: %s", why);
	bufferevent_enable(c->cbev, EV_WRITE);
	eg_conn_log_access(c, 502);
	eg_px_end_request(c);
	eg_conn_close_after_flush(c);
}

static void body_splice_cb(evutil_socket_t fd, short what, void *arg)
{
	struct eg_conn *c = arg;
	(void)fd;
	uint64_t before = c->bytes_out;
	enum eg_pipe_result r = eg_pipe_relay_pump(c->body_splice, &c->resp_remaining, &c->bytes_out);
	if (c->bytes_out != before || (what & EV_WRITE))
		c->last_activity = eg_px_now_ms() / 1e3;
	if (r == EG_PIPE_RUNNING)
		return;
	if (r == EG_PIPE_ERROR) {
		body_truncated(c, strerror(errno));
		return;
	}
	int eof = c->body_splice->eof;
	eg_px_body_splice_end(c);
	if (c->resp_body == EG_BODY_LENGTH && c->resp_remaining > 0) {
		body_truncated(c, "upstream closed");
		return;
	}
	if (c->resp_body == EG_BODY_UNTIL_CLOSE || eof) {
		c->up_reusable = 0;
		c->client_close |= c->resp_body == EG_BODY_UNTIL_CLOSE;
	}
	c->resp_done = 1;
	evtimer_del(c->timer);
	bufferevent_enable(c->cbev, EV_WRITE);
	if (c->ubev && c->up_reusable)
		bufferevent_enable(c->ubev, EV_READ | EV_WRITE); /* an idle upstream that closes is noticed */
	response_complete(c);
}

/* Checks for a stalled spliced body (no byte either way for response_timeout). */
void eg_px_body_splice_timer(struct eg_conn *c)
{
	double limit = c->pol->settings.response_timeout;
	double idle = eg_px_now_ms() / 1e3 - c->last_activity;
	if (idle >= limit) {
		body_truncated(c, "stalled");
		return;
	}
	eg_px_arm_timer(c, limit - idle + 0.01);
}

/* A large Content-Length or until-close response body moves upstream -> pipe -> client with
 * splice(2) once nothing of it is left in user space: the head and what came with it are
 * delivered, the request is complete. Until then (or when no pipe can be had) the buffered
 * relay goes on. */
static void maybe_splice_body(struct eg_conn *c)
{
	if (c->body_splice || c->state != EG_ST_FORWARDING || !c->resp_head_done || c->resp_done || !c->req_done ||
	    !c->ubev || !c->pol || !c->pol->settings.tunnel_splice)
		return;
	if (c->resp_body == EG_BODY_LENGTH ? c->resp_remaining < SPLICE_MIN_BODY : c->resp_body != EG_BODY_UNTIL_CLOSE)
		return;
	if (evbuffer_get_length(bufferevent_get_input(c->ubev)) > 0 ||
	    evbuffer_get_length(bufferevent_get_output(c->ubev)) > 0)
		return;
	if (evbuffer_get_length(bufferevent_get_output(c->cbev)) > 0) {
		/* come back when the client has taken what is queued */
		bufferevent_setcb(c->cbev, eg_px_client_read_cb, client_write_cb, eg_px_client_event_cb, c);
		bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
		return;
	}
	struct eg_pipe_relay *r = malloc(sizeof(*r));
	if (!r)
		return;
	if (eg_pipe_relay_init(r, c->srv->base, (int)bufferevent_getfd(c->ubev), (int)bufferevent_getfd(c->cbev),
			       body_splice_cb, c) < 0) {
		eg_log(EG_LOG_DEBUG, "proxy", "%s: no splice (%s): relaying the body through buffers", c->client,
		       strerror(errno));
		eg_pipe_relay_free(r);
		free(r);
		return;
	}
	c->body_splice = r;
	if (c->resp_body == EG_BODY_UNTIL_CLOSE)
		c->resp_remaining = UINT64_MAX; /* no limit: the upstream's end ends the body */
	bufferevent_disable(c->ubev, EV_READ | EV_WRITE);
	bufferevent_set_timeouts(c->ubev, NULL, NULL);
	bufferevent_disable(c->cbev, EV_READ | EV_WRITE);
	c->last_activity = eg_px_now_ms() / 1e3;
	eg_px_arm_timer(c, c->pol->settings.response_timeout);
	eg_pipe_relay_start(r);
	c->srv->metrics.bodies_spliced++;
}

static void write_response_head(struct eg_conn *c, const struct eg_http_head *r, const char *raw)
{
	struct evbuffer *out = bufferevent_get_output(c->cbev);
	/* status line: our version, their code and reason */
	const char *sp = memchr(raw, ' ', r->head_len);
	const char *eol = memchr(raw, '\r', r->head_len);
	evbuffer_add(out, "HTTP/1.1", 8);
	evbuffer_add(out, sp, (size_t)(eol - sp));
	evbuffer_add(out, "\r\n", 2);
	for (int i = 0; i < r->nheaders; i++) {
		const struct eg_header *hd = &r->headers[i];
		if (hd->hop_by_hop)
			continue;
		evbuffer_add(out, hd->name.p, hd->name.n);
		evbuffer_add(out, ": ", 2);
		evbuffer_add(out, hd->value.p, hd->value.n);
		evbuffer_add(out, "\r\n", 2);
	}
	if (r->status >= 200 && c->client_close)
		evbuffer_add(out, "Connection: close\r\n", 19);
	else if (r->status >= 200 && c->rs->head.version_minor == 0)
		evbuffer_add(out, "Connection: keep-alive\r\n", 24);
	evbuffer_add(out, "Via: 1.1 enrollgate\r\n\r\n", 23);
}

static void response_complete(struct eg_conn *c)
{
	eg_bev_flush_now(c->cbev);
	if (c->ubev)
		bufferevent_set_timeouts(c->ubev, NULL, NULL);
	eg_conn_log_access(c, c->resp_status);
	eg_px_end_request(c);
	if (!c->up_reusable)
		eg_px_free_upstream(c);
	else
		c->up_idle = 1;
	/* a client that half-closed may have pipelined more requests before its end: answer them */
	int more = c->cbev_eof && !c->rs->head.conn_close && evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0;
	if (c->client_close && !more) {
		eg_px_release_upstream(c); /* now, not once the last bytes are flushed to the client */
		eg_conn_close_after_flush(c);
		return;
	}
	eg_px_await_head(c, 0);
}

/* Parse the response head from the upstream input; 1 when a final head was written. */
static int handle_response_head(struct eg_conn *c, struct evbuffer *in)
{
	for (;;) {
		size_t len = evbuffer_get_length(in);
		struct evbuffer_ptr end = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (end.pos < 0) {
			if (len > MAX_RESPONSE_HEAD) {
				eg_conn_send_error(c, 502, "upstream response head too large");
				return -1;
			}
			if (len >= 5) {
				char five[5];
				evbuffer_copyout(in, five, 5);
				if (memcmp(five, "HTTP/", 5) != 0) {
					eg_conn_send_error(c, 502, "upstream did not answer with HTTP");
					return -1;
				}
			}
			return 0;
		}
		size_t hl = (size_t)end.pos + 4;
		char *raw = (char *)evbuffer_pullup(in, (ssize_t)hl);
		struct eg_http_head *r = &c->rs->resp;
		if (eg_http_parse_response(raw, hl, c->rs->head.method.p, c->rs->head.method.n, r) != EG_HTTP_OK) {
			char msg[128];
			snprintf(msg, sizeof(msg), "malformed upstream response: %s", r->reason ? r->reason : "?");
			eg_conn_send_error(c, 502, msg);
			return -1;
		}
		if (r->status == 101) {
			eg_conn_send_error(c, 502, "upstream switched protocols without being asked");
			return -1;
		}
		if (r->status < 200) {
			write_response_head(c, r, raw); /* 100 Continue and friends: relay, keep waiting */
			evbuffer_drain(in, hl);
			continue;
		}
		c->resp_status = r->status;
		c->resp_body = r->body;
		c->resp_remaining = r->content_length;
		eg_chunked_init(&c->resp_chunk);
		c->up_reusable = !r->conn_close && r->body != EG_BODY_UNTIL_CLOSE;
		if (r->status == 401 || r->status == 407)
			c->up_private = 1; /* an authentication exchange may be under way on it */
		if (r->body == EG_BODY_UNTIL_CLOSE || (r->body == EG_BODY_CHUNKED && c->rs->head.version_minor == 0))
			c->client_close = 1;
		write_response_head(c, r, raw);
		c->response_started = 1;
		evbuffer_drain(in, hl);
		c->resp_head_done = 1;
		c->resp_done = r->body == EG_BODY_NONE;
		return 1;
	}
}

static void pump_response(struct eg_conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->ubev);
	struct evbuffer *out = bufferevent_get_output(c->cbev);
	size_t n;
	enum eg_chunk_result r = body_span(in, c->resp_body, c->resp_remaining, &c->resp_chunk, &n);
	evbuffer_remove_buffer(in, out, n); /* on a chunking error, what was valid before it */
	c->bytes_out += n;
	if (c->resp_body == EG_BODY_LENGTH)
		c->resp_remaining -= n;
	if (r == EG_CHUNK_ERROR) {
		eg_log(EG_LOG_WARN, "upstream", "malformed chunked body from %s", c->target.host);
		eg_conn_log_access(c, 502);
		eg_px_end_request(c);
		eg_conn_close_after_flush(c);
		return;
	}
	if (r == EG_CHUNK_DONE)
		c->resp_done = 1;
	if (!c->resp_done && evbuffer_get_length(out) >= HIGH_WATER) {
		bufferevent_disable(c->ubev, EV_READ); /* client is slow: stop reading upstream */
		bufferevent_setcb(c->cbev, eg_px_client_read_cb, client_write_cb, eg_px_client_event_cb, c);
		bufferevent_setwatermark(c->cbev, EV_WRITE, HIGH_WATER / 2, 0);
	}
}

void eg_px_upstream_read_cb(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_TUNNEL || c->state == EG_ST_SNI) {
		eg_tunnel_upstream_read(c);
		return;
	}
	if (c->state != EG_ST_FORWARDING) {
		/* bytes from an idle kept-alive upstream: it is no longer trustworthy */
		eg_px_free_upstream(c);
		return;
	}
	struct evbuffer *in = bufferevent_get_input(c->ubev);
	if (!c->resp_head_done) {
		if (handle_response_head(c, in) <= 0)
			return;
		evtimer_del(c->timer);
		struct timeval tv;
		eg_px_set_tv(&tv, c->pol->settings.response_timeout);
		bufferevent_set_timeouts(c->ubev, &tv, NULL); /* an upstream stalling mid-body */
	}
	if (!c->resp_done) {
		pump_response(c);
		if (c->state == EG_ST_FORWARDING && !c->resp_done)
			maybe_splice_body(c);
		if (c->body_splice)
			return;
	}
	if (c->state == EG_ST_FORWARDING && c->resp_done) {
		if (!c->req_done)
			c->client_close = 1; /* origin answered before the body ended: cannot resync */
		if (evbuffer_get_length(in) > 0)
			c->up_reusable = 0;
		response_complete(c);
	}
}

void eg_px_upstream_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_TUNNEL || c->state == EG_ST_SNI) {
		eg_tunnel_upstream_event(c, what);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		eg_px_upstream_connected(c);
		return;
	}
	if (c->state == EG_ST_CONNECTING) {
		eg_px_free_upstream(c);
		eg_px_connect_next(c);
		return;
	}
	if (c->state != EG_ST_FORWARDING) {
		eg_px_free_upstream(c); /* idle upstream closed: fine */
		return;
	}
	if ((what & BEV_EVENT_EOF) && c->resp_head_done && c->resp_body == EG_BODY_UNTIL_CLOSE) {
		pump_response(c);
		c->resp_done = 1;
		c->up_reusable = 0;
		c->client_close = 1;
		response_complete(c);
		return;
	}
	if (!c->resp_head_done && c->up_reused && c->req_body == EG_BODY_NONE && eg_px_safe_to_resend(c) &&
	    evbuffer_get_length(bufferevent_get_input(c->ubev)) == 0) {
		/* a kept-alive connection the origin closed as the request went out, before any answer
		 * byte: a request without a body and a safe method goes once more, on a new connection */
		eg_px_free_upstream(c);
		c->up_reused = 0;
		eg_px_resolve_and_connect(c);
		return;
	}
	if (!c->resp_head_done) {
		eg_conn_send_error(c, 502, (what & BEV_EVENT_EOF) ? "upstream closed the connection without answering"
								   : "upstream connection failed");
		return;
	}
	/* truncated response: the client must see the connection end */
	eg_conn_log_access(c, 502);
	eg_px_end_request(c);
	eg_conn_close_after_flush(c);
}
