/* tunnel.c: CONNECT tunnels — two linked bufferevents relaying bytes untouched, with
 * back-pressure (a side stops reading while the other's output is above the watermark),
 * an idle timeout over both directions, and an optional look at the TLS ClientHello
 * (peeked, never consumed or altered) so that policy can compare SNI with the target.
 * Once the tunnel runs and both bufferevents are empty, the bytes move socket -> pipe ->
 * socket with splice(2) instead: they never enter user space (see docs/performance.md). */
#include "proxy.h"
#include "pipe_relay.h"
#include "sni.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "log.h"

#define TUNNEL_HIGH_WATER (512 * 1024)
#define SNI_MAX_WAIT_BYTES (16 * 1024 + 5)

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void arm(struct eg_conn *c, double secs)
{
	struct timeval tv = { (time_t)secs, (suseconds_t)((secs - (double)(time_t)secs) * 1e6) };
	evtimer_add(c->timer, &tv);
}

static void tunnel_end(struct eg_conn *c, const char *why)
{
	eg_log(EG_LOG_DEBUG, "tunnel", "%s %s:%u closed: %s", c->client, c->target.host, c->target.port, why);
	eg_conn_log_access(c, 200);
	eg_conn_free(c);
}

static int pass_end(struct eg_conn *c, int fd, int both_ended);

/* ---- splice(2) relay ---- */

/* One direction of a spliced tunnel. */
struct splice_dir {
	struct eg_conn *c;
	struct eg_pipe_relay r;
	uint64_t left;              /* no limit: UINT64_MAX */
	uint64_t *counter;
	unsigned done : 1;          /* src ended and all it sent is delivered */
};

struct eg_tunnel_splice {
	struct splice_dir up, down; /* client -> upstream, upstream -> client */
};

static void splice_cb(evutil_socket_t fd, short what, void *arg)
{
	struct splice_dir *d = arg;
	struct eg_conn *c = d->c;
	(void)fd;
	(void)what;
	uint64_t before = *d->counter;
	enum eg_pipe_result r = eg_pipe_relay_pump(&d->r, &d->left, d->counter);
	if (*d->counter != before || what & EV_WRITE)
		c->last_activity = mono();
	if (r == EG_PIPE_RUNNING)
		return;
	if (r == EG_PIPE_DONE) {
		struct eg_tunnel_splice *t = c->splice;
		d->done = 1;
		pass_end(c, d->r.dst, (d == &t->up ? &t->down : &t->up)->done);
		return;
	}
	char why[96];
	snprintf(why, sizeof(why), "relay error: %s", strerror(errno));
	tunnel_end(c, why);
}

static int splice_dir_init(struct splice_dir *d, struct eg_conn *c, int src, int dst, uint64_t *counter)
{
	d->c = c;
	d->left = UINT64_MAX;
	d->counter = counter;
	return eg_pipe_relay_init(&d->r, c->srv->base, src, dst, splice_cb, d);
}

/* Frees the splice state of a tunnel, if it has one (its sockets belong to the bufferevents). */
void eg_tunnel_free(struct eg_conn *c)
{
	if (!c->splice)
		return;
	eg_pipe_relay_free(&c->splice->up.r);
	eg_pipe_relay_free(&c->splice->down.r);
	free(c->splice);
	c->splice = NULL;
}

static int bev_idle(struct bufferevent *bev)
{
	return evbuffer_get_length(bufferevent_get_input(bev)) == 0 &&
	       evbuffer_get_length(bufferevent_get_output(bev)) == 0;
}

/* Hand a running tunnel over from the bufferevents to splice(2) when nothing is left in
 * them; otherwise (or when pipes cannot be had: file descriptor limit) it stays buffered. */
static void maybe_splice(struct eg_conn *c)
{
	if (c->splice || c->state != EG_ST_TUNNEL || !c->srv->policy->settings.tunnel_splice || c->cbev_eof || c->ubev_eof ||
	    !bev_idle(c->cbev) || !bev_idle(c->ubev))
		return;
	struct eg_tunnel_splice *t = calloc(1, sizeof(*t));
	if (!t)
		return;
	int cfd = (int)bufferevent_getfd(c->cbev), ufd = (int)bufferevent_getfd(c->ubev);
	c->splice = t;
	eg_pipe_relay_clear(&t->up.r);
	eg_pipe_relay_clear(&t->down.r);
	if (splice_dir_init(&t->up, c, cfd, ufd, &c->bytes_in) < 0 ||
	    splice_dir_init(&t->down, c, ufd, cfd, &c->bytes_out) < 0) {
		eg_log(EG_LOG_DEBUG, "tunnel", "%s: no splice (%s): relaying through buffers", c->client, strerror(errno));
		eg_tunnel_free(c);
		return;
	}
	bufferevent_disable(c->cbev, EV_READ | EV_WRITE);
	bufferevent_disable(c->ubev, EV_READ | EV_WRITE);
	eg_pipe_relay_start(&t->up.r);
	eg_pipe_relay_start(&t->down.r);
	c->srv->metrics.tunnels_spliced++;
}

/* Relay what src holds to dst; throttle src if dst is backed up. */
static void relay(struct eg_conn *c, struct bufferevent *src, struct bufferevent *dst, uint64_t *counter)
{
	struct evbuffer *in = bufferevent_get_input(src), *out = bufferevent_get_output(dst);
	size_t n = evbuffer_get_length(in);
	*counter += n;
	evbuffer_add_buffer(out, in);
	c->last_activity = mono();
	if (evbuffer_get_length(out) >= TUNNEL_HIGH_WATER) {
		bufferevent_disable(src, EV_READ);
		bufferevent_setwatermark(dst, EV_WRITE, TUNNEL_HIGH_WATER / 2, TUNNEL_HIGH_WATER);
	}
}

static void client_read(struct bufferevent *bev, void *arg);

/* Once the tunnel runs, no decision is left to make: drop the generation so that long-lived
 * tunnels do not keep old policies alive across reloads. */
static void tunnel_release_policy(struct eg_conn *c)
{
	if (c->pol) {
		c->tunnel_idle_timeout = c->pol->settings.tunnel_idle_timeout;
		eg_policy_unref(c->pol);
		c->pol = NULL;
	}
	eg_conn_put_req_state(c);
}

static int client_hello_decide(struct eg_conn *c, int final);

/* Decide on the ClientHello once enough of it is here; 1 when the tunnel may run, 0 to wait,
 * -1 when the connection was closed. */
static int check_client_hello(struct eg_conn *c)
{
	return client_hello_decide(c, 0);
}

static int check_client_hello_final(struct eg_conn *c)
{
	return client_hello_decide(c, 1);
}

static int client_hello_decide(struct eg_conn *c, int final)
{
	struct evbuffer *in = bufferevent_get_input(c->cbev);
	size_t len = evbuffer_get_length(in);
	size_t want = len < SNI_MAX_WAIT_BYTES ? len : SNI_MAX_WAIT_BYTES;
	const unsigned char *p = evbuffer_pullup(in, (ssize_t)want);
	char name[256];
	enum eg_sni_result r = eg_sni_parse(p, want, name, sizeof(name));
	if (r == EG_SNI_MORE && len < SNI_MAX_WAIT_BYTES && !final)
		return 0;
	struct eg_request_info ri = {
		.method = c->method, .host = c->target.host, .host_is_ip = c->target.host_is_ip, .port = c->target.port,
		.client = c->client, .sni = r == EG_SNI_FOUND ? name : NULL,
	};
	if (r == EG_SNI_FOUND)
		snprintf(c->sni, sizeof(c->sni), "%s", name);
	eg_policy_client_hello(c->pol, &ri, &c->verdict);
	if (!c->verdict.allow) {
		/* the 200 is already sent: all we can do is close, and say why in the log */
		snprintf(c->deny_reason, sizeof(c->deny_reason), "%s", c->verdict.reason);
		eg_log(EG_LOG_INFO, "deny", "%s tunnel to %s:%u closed: %s", c->client, c->target.host, c->target.port,
		       c->verdict.reason);
		eg_conn_log_access(c, 403);
		eg_conn_free(c);
		return -1;
	}
	c->state = EG_ST_TUNNEL;
	tunnel_release_policy(c);
	arm(c, c->tunnel_idle_timeout); /* the timer was the ClientHello deadline until now */
	return 1;
}

static void client_read(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_SNI && check_client_hello(c) <= 0)
		return;
	relay(c, c->cbev, c->ubev, &c->bytes_in);
}

void eg_tunnel_upstream_read(struct eg_conn *c)
{
	relay(c, c->ubev, c->cbev, &c->bytes_out);
}

static void upstream_read(struct bufferevent *bev, void *arg)
{
	(void)bev;
	eg_tunnel_upstream_read(arg);
}

static void upstream_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	eg_tunnel_upstream_event(arg, what);
}

/* The side that writes to fd ended and everything it sent is delivered: pass the end on
 * (shutdown for writing), so that a peer that half-closes still gets its answer. The tunnel
 * ends when both directions have ended; until then a shorter idle timeout applies. Returns -1
 * when the connection was freed. */
static int pass_end(struct eg_conn *c, int fd, int both_ended)
{
	shutdown(fd, SHUT_WR);
	if (both_ended) {
		tunnel_end(c, "both sides closed");
		return -1;
	}
	if (c->tunnel_idle_timeout > EG_TUNNEL_HALF_CLOSED_TIMEOUT)
		c->tunnel_idle_timeout = EG_TUNNEL_HALF_CLOSED_TIMEOUT;
	return 0;
}

/* dst drained below the watermark: let its source read again */
static void client_write(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	if (c->ubev_eof) {
		if (evbuffer_get_length(bufferevent_get_output(c->cbev)) == 0 && !c->cbev_shut) {
			c->cbev_shut = 1;
			pass_end(c, (int)bufferevent_getfd(c->cbev), c->ubev_shut);
		}
		return;
	}
	bufferevent_enable(c->ubev, EV_READ);
	maybe_splice(c);
}

static void upstream_write(struct bufferevent *bev, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	bufferevent_setwatermark(c->ubev, EV_WRITE, 0, 0);
	if (c->cbev_eof) {
		if (evbuffer_get_length(bufferevent_get_output(c->ubev)) == 0 && !c->ubev_shut) {
			c->ubev_shut = 1;
			pass_end(c, (int)bufferevent_getfd(c->ubev), c->cbev_shut);
		}
		return;
	}
	bufferevent_enable(c->cbev, EV_READ);
	maybe_splice(c);
}

/* One side ended (EOF) or failed: an error ends the tunnel; an end is passed on to the other
 * side once what is queued for it is written (see pass_end). */
static void side_closed(struct eg_conn *c, struct bufferevent *other, int from_client, short what)
{
	if (what & BEV_EVENT_ERROR) {
		tunnel_end(c, from_client ? "client error" : "upstream error");
		return;
	}
	if (from_client)
		c->cbev_eof = 1;
	else
		c->ubev_eof = 1;
	bufferevent_setwatermark(other, EV_WRITE, 0, 0); /* write callback fires when drained */
	if (evbuffer_get_length(bufferevent_get_output(other)) == 0) {
		if (from_client && !c->ubev_shut) {
			c->ubev_shut = 1;
			pass_end(c, (int)bufferevent_getfd(c->ubev), c->cbev_shut);
		} else if (!from_client && !c->cbev_shut) {
			c->cbev_shut = 1;
			pass_end(c, (int)bufferevent_getfd(c->cbev), c->ubev_shut);
		}
	}
}

static void client_event(struct bufferevent *bev, short what, void *arg)
{
	struct eg_conn *c = arg;
	(void)bev;
	if (c->state == EG_ST_SNI) {
		if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0 && check_client_hello(c) <= 0)
			return;
		if (c->state == EG_ST_SNI) {
			tunnel_end(c, "client closed before the ClientHello");
			return;
		}
		relay(c, c->cbev, c->ubev, &c->bytes_in);
	}
	side_closed(c, c->ubev, 1, what);
}

void eg_tunnel_upstream_event(struct eg_conn *c, short what)
{
	eg_tunnel_upstream_read(c);
	side_closed(c, c->cbev, 0, what);
}

void eg_tunnel_timer(struct eg_conn *c)
{
	if (c->state == EG_ST_SNI) {
		/* no complete ClientHello in time: the policy judges what is there (maybe not TLS) */
		struct evbuffer *in = bufferevent_get_input(c->cbev);
		if (evbuffer_get_length(in) == 0) {
			c->state = EG_ST_TUNNEL; /* the server may speak first (SMTP, ...) */
			tunnel_release_policy(c);
		} else {
			if (check_client_hello_final(c) < 0)
				return;
			relay(c, c->cbev, c->ubev, &c->bytes_in);
		}
	}
	double idle = mono() - c->last_activity;
	if (idle >= c->tunnel_idle_timeout) {
		tunnel_end(c, "idle timeout");
		return;
	}
	arm(c, c->tunnel_idle_timeout - idle + 0.01);
}

void eg_tunnel_start(struct eg_conn *c)
{
	struct eg_server *srv = c->srv;
	const struct eg_settings *s = &c->pol->settings;
	static const char established[] = "HTTP/1.1 200 Connection Established\r\nVia: 1.1 enrollgate\r\n\r\n";
	srv->metrics.active_tunnels++;
	srv->metrics.tunnels_total++;
	c->response_started = 1;
	c->last_activity = mono();
	c->state = (c->pol->require_sni_match || c->pol->ref_on_client_hello >= 0) ? EG_ST_SNI : EG_ST_TUNNEL;
	bufferevent_write(c->cbev, established, sizeof(established) - 1);
	bufferevent_setcb(c->cbev, client_read, client_write, client_event, c);
	bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
	bufferevent_setwatermark(c->cbev, EV_READ, 0, 0);
	bufferevent_set_timeouts(c->cbev, NULL, NULL);
	bufferevent_set_timeouts(c->ubev, NULL, NULL); /* the tunnel's own timer watches both sides */
	bufferevent_enable(c->cbev, EV_READ);
	bufferevent_setcb(c->ubev, upstream_read, upstream_write, upstream_event, c);
	bufferevent_setwatermark(c->ubev, EV_WRITE, 0, 0);
	bufferevent_enable(c->ubev, EV_READ | EV_WRITE);
	c->tunnel_idle_timeout = s->tunnel_idle_timeout;
	if (c->state == EG_ST_SNI) {
		arm(c, s->header_timeout);
	} else {
		arm(c, s->tunnel_idle_timeout);
		tunnel_release_policy(c);
	}
	/* bytes the client sent right after its CONNECT head are already waiting */
	if (evbuffer_get_length(bufferevent_get_input(c->cbev)) > 0)
		client_read(c->cbev, c);
}
