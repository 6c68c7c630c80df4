/* upstream.h: HTTP(S) requests from a relay (EST, CMP) to its upstream servers. The configured
 * URLs are tried in order; one that fails is skipped for down_hold seconds (health memory; when
 * every one is marked down, the one marked longest ago gets one more try). Connections are kept
 * alive in a pool (a mutual-TLS handshake costs more than a request). A new connection must
 * finish its TCP connection within connect_timeout and its TLS handshake within tls_timeout more,
 * else the next upstream is tried; an upstream
 * that took the request but does not answer within response_timeout is not replaced by another
 * for a request with a body (it may act on it: sending it twice could issue twice). */
#ifndef EG_UPSTREAM_H
#define EG_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include <event2/http.h>
#include <openssl/ssl.h>

struct event_base;
struct evdns_base;

struct eg_upstream {
	char url[512];             /* as configured, for logs */
	char host[256];            /* without IPv6 brackets */
	uint16_t port;
	char path[256];            /* base path without a trailing slash */
	char exact_path[256];      /* the path exactly as configured ("/" if none) */
	int tls;                   /* https */
};

/* Parse "https://host[:port][/path]" (and "http://..." when allow_plain) into up: no query,
 * fragment or user info. 0, or -1. */
int eg_upstream_parse(const char *url, int allow_plain, struct eg_upstream *up);

/* Seconds a relay allows an upstream (est.lua/cmp.lua `timeouts`): a new connection's TCP
 * connection, then its TLS handshake, then the answer to a request. */
struct eg_upstream_timeouts {
	double connect, tls, response;
};

/* What one request may use; the pointers belong to the configuration generation the caller
 * holds until its callback has run. */
struct eg_upstream_target {
	const struct eg_upstream *up;
	int nup;
	SSL_CTX *client_ctx;       /* https upstreams: trust anchors and our identity */
	int verify_name;           /* check the server certificate names the host */
	double connect_timeout;    /* seconds: TCP connection of a new connection */
	double tls_timeout;        /* seconds: its TLS handshake, once the TCP connection is up */
	double response_timeout;
	double down_hold;
	size_t max_answer;         /* bytes of answer body accepted */
};

enum eg_upstream_result {
	EG_UPSTREAM_ANSWERED,      /* an HTTP response came back (any status) */
	EG_UPSTREAM_DOWN,          /* no upstream could be reached (or all are marked down) */
	EG_UPSTREAM_NO_ANSWER,     /* the request with a body went out and no answer came in time */
	EG_UPSTREAM_BROKEN_ANSWER, /* the answer to a request with a body began (its head came in)
				    * and then failed: cut off, too large, or stalled mid-body. Not
				    * sent anywhere again: the server had the request and acted on it */
};

struct eg_upstream_reply {
	enum eg_upstream_result result;
	struct evhttp_request *answer;  /* ANSWERED: the response, valid during the callback only */
	const char *upstream;      /* URL of the upstream that answered or was tried last, or "" */
	int tried;                 /* upstreams actually tried (0: every one was marked down) */
};

typedef void (*eg_upstream_cb)(const struct eg_upstream_reply *r, void *arg);

/* The pool and health memory of one relay (area names it in logs). NULL on failure. */
struct eg_upstreams *eg_upstreams_new(struct event_base *base, struct evdns_base *dns, const char *area,
				      const char *user_agent);
void eg_upstreams_free(struct eg_upstreams *u);

#define EG_UPSTREAM_MAX_HEADERS 4

/* Send a request: method, the upstream's base path + suffix (suffix NULL: the configured URL's
 * path exactly, trailing slash included), headers (up to
 * EG_UPSTREAM_MAX_HEADERS name/value pairs, NULL-terminated; Host is added), body (may be
 * NULL). cb runs exactly once, possibly before this returns. */
void eg_upstream_send(struct eg_upstreams *u, const struct eg_upstream_target *t, enum evhttp_cmd_type method,
		      const char *suffix, const char *const *headers, const void *body, size_t len,
		      eg_upstream_cb cb, void *arg);

/* An SSL for a connection to up with ctx (SNI, and the name check when verify_name). NULL on
 * failure. */
SSL *eg_upstream_ssl(SSL_CTX *ctx, const struct eg_upstream *up, int verify_name);

#endif
