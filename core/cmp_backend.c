/* cmp_backend.c: the CMP proxy's backends (cmp_backend.h). "http": RFC 6712 to the alias' CAs
 * through core/upstream.c. */
#include "cmp_backend.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "cmp_conf.h"
#include "upstream.h"

#define CMP_MAX_ANSWER (1024 * 1024) /* most bytes taken from a CA answer */

struct http_send {
	eg_cmp_backend_cb cb;
	void *arg;
};

static void *http_open(struct event_base *base, struct evdns_base *dns)
{
	return eg_upstreams_new(base, dns, "cmp", "enrollgate-cmp");
}

static void http_close(void *state)
{
	eg_upstreams_free(state);
}

static void http_reply_cb(const struct eg_upstream_reply *r, void *arg)
{
	struct http_send hs = *(struct http_send *)arg;
	free(arg);
	struct eg_cmp_backend_answer a = {
		.result = r->result == EG_UPSTREAM_ANSWERED ? EG_CMP_BACKEND_ANSWERED
			  : r->result == EG_UPSTREAM_NO_ANSWER ? EG_CMP_BACKEND_NO_ANSWER
			  : r->result == EG_UPSTREAM_BROKEN_ANSWER ? EG_CMP_BACKEND_BROKEN_ANSWER : EG_CMP_BACKEND_DOWN,
		.upstream = r->upstream, .tried = r->tried,
	};
	if (r->result == EG_UPSTREAM_ANSWERED) {
		a.status = evhttp_request_get_response_code(r->answer);
		a.status_line = evhttp_request_get_response_code_line(r->answer);
		a.content_type = evhttp_find_header(evhttp_request_get_input_headers(r->answer), "Content-Type");
		a.body = evhttp_request_get_input_buffer(r->answer);
	}
	hs.cb(&a, hs.arg);
}

static void http_send(void *state, const struct eg_cmp_conf *conf, const struct eg_cmp_alias *al, const void *der,
		      size_t len, eg_cmp_backend_cb cb, void *arg)
{
	struct http_send *hs = malloc(sizeof(*hs));
	if (!hs) {
		struct eg_cmp_backend_answer a = { .result = EG_CMP_BACKEND_DOWN, .upstream = "" };
		cb(&a, arg);
		return;
	}
	hs->cb = cb;
	hs->arg = arg;
	struct eg_upstream_target t = {
		.up = al->up, .nup = al->nup, .client_ctx = al->client_ctx, .verify_name = al->verify_name,
		.connect_timeout = conf->timeouts.connect, .tls_timeout = conf->timeouts.tls,
		.response_timeout = conf->timeouts.response,
		.down_hold = conf->down_hold, .max_answer = CMP_MAX_ANSWER,
	};
	static const char *const headers[] = { "Content-Type", "application/pkixcmp", "Accept", "application/pkixcmp",
					       "Cache-Control", "no-cache", NULL };
	eg_upstream_send(state, &t, EVHTTP_REQ_POST, NULL, headers, der, len, http_reply_cb, hs);
}

static const struct eg_cmp_backend http_backend = {
	.name = "http", .open = http_open, .close = http_close, .send = http_send,
};

const struct eg_cmp_backend *const eg_cmp_backends[EG_CMP_NBACKENDS] = { &http_backend };

int eg_cmp_backend_find(const char *name)
{
	for (int i = 0; i < EG_CMP_NBACKENDS; i++)
		if (strcmp(eg_cmp_backends[i]->name, name) == 0)
			return i;
	return -1;
}
