/* cmp.c: the CMP proxy; see cmp.h.
 *
 * Client side: evhttp (over bufferevent_openssl when cmp.lua has tls). Each message is parsed,
 * checked and decided on the loop (the MAC and signature checks are a few hundred microseconds
 * of OpenSSL), then sent through core/upstream.c to the alias' CA. Every message keeps a
 * reference to the generation it started with; the audit record and the metrics are written
 * when its answer is. */
#include "cmp.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>

#include "cmp_backend.h"
#include "cmp_conf.h"
#include "cmp_msg.h"
#include "csr.h"
#include "http_reply.h"
#include "log.h"
#include "policy.h"
#include "server.h"

#define CMP_WELL_KNOWN "/.well-known/cmp"
#define CMP_MAX_BODY EG_CMP_MAX_DER
#define CMP_MAX_HEADERS (16 * 1024)
#define CMP_CLIENT_TIMEOUT 30          /* seconds a client connection may stall */
#define CMP_STAT_SLOTS 512

/* Messages by alias, type and result, for /metrics. */
struct cmp_stat {
	char alias[64];
	const char *type;                  /* static strings */
	const char *result;
	unsigned long long n;
};

struct eg_cmp {
	struct eg_server *srv;
	struct evhttp *http;
	SSL_CTX *ctx;                      /* server context new connections get (a reference), or NULL */
	void *backend_state[EG_CMP_NBACKENDS]; /* each backend's own (http: the upstream pool) */
	struct cmp_stat stats[CMP_STAT_SLOTS];
	unsigned long long stats_other;
	int calls;                         /* messages being answered */
	struct evhttp_bound_socket *bound[EG_MAX_LISTEN];
	int nbound;
};

/* One client message on its way. Owns its generation reference and the parsed message. */
struct cmp_call {
	struct eg_cmp *cmp;
	struct evhttp_request *req;
	struct eg_policy *pol;
	struct eg_cmp_alias *alias;
	struct eg_cmp_msg *msg;            /* NULL until parsed (or when the body is no PKIMessage) */
	const char *protection;            /* what verified: "mac", "signature", "none"; NULL before */
	struct eg_csr *signer;             /* signature protection: the signer's names */
	char client[64];
	char path[256];
	char upstream[512];
	double t_start;
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void count(struct eg_cmp *c, const char *alias, const char *type, const char *result)
{
	for (int i = 0; i < CMP_STAT_SLOTS; i++) {
		struct cmp_stat *s = &c->stats[i];
		if (!s->result) {
			snprintf(s->alias, sizeof(s->alias), "%s", alias);
			s->type = type;
			s->result = result;
		}
		if (strcmp(s->result, result) == 0 && strcmp(s->type, type) == 0 && strcmp(s->alias, alias) == 0) {
			s->n++;
			return;
		}
	}
	c->stats_other++;
}

/* The transaction's audit record and its count. result and answer must be static strings. */
static void audit(struct cmp_call *call, int status, const char *result, const char *detail, const char *answer,
		  const char *answer_status)
{
	const struct eg_cmp_msg *m = call->msg;
	const char *type = m ? eg_cmp_type_name(m->body_type) : "(none)";
	count(call->cmp, call->alias ? call->alias->name : "(none)", type, result);
	struct eg_jbuf j;
	eg_jbuf_begin(&j, status >= 500 ? EG_LOG_WARN : EG_LOG_INFO, "cmp");
	eg_jbuf_str(&j, "client", call->client);
	eg_jbuf_str(&j, "alias", call->alias ? call->alias->name : NULL);
	eg_jbuf_str(&j, "type", m ? type : NULL);
	eg_jbuf_str(&j, "protection", m ? (call->protection ? call->protection
					    : m->protection == EG_CMP_PROT_MAC ? "mac"
					    : m->protection == EG_CMP_PROT_SIGNATURE ? "signature"
					    : m->protection == EG_CMP_PROT_NONE ? "none" : m->protection_alg) : NULL);
	eg_jbuf_str(&j, "sender", m ? m->sender : NULL);
	eg_jbuf_str(&j, "key_id", m && m->sender_kid[0] ? m->sender_kid : NULL);
	eg_jbuf_str(&j, "signer", call->signer ? call->signer->subject_text : NULL);
	eg_jbuf_str(&j, "transaction_id", m && m->transaction_id[0] ? m->transaction_id : NULL);
	if (m && m->nrequests > 0) {
		const struct eg_csr *c = m->requests[0];
		char key[64];
		snprintf(key, sizeof(key), "%s%s%s/%d", c->key_type, c->curve[0] ? ":" : "", c->curve, c->key_bits);
		eg_jbuf_str(&j, "subject", c->subject_text);
		eg_jbuf_str(&j, "key", key);
	}
	eg_jbuf_str(&j, "upstream", call->upstream[0] ? call->upstream : NULL);
	eg_jbuf_int(&j, "status", status);
	eg_jbuf_str(&j, "result", result);
	if (detail)
		eg_jbuf_str(&j, "reason", detail);
	if (answer)
		eg_jbuf_str(&j, "answer", answer);
	if (answer_status)
		eg_jbuf_str(&j, "answer_status", answer_status);
	eg_jbuf_double(&j, "duration_ms", (mono() - call->t_start) * 1e3);
	eg_jbuf_emit(&j);
}

static void call_free(struct cmp_call *call)
{
	eg_cmp_msg_free(call->msg);
	eg_csr_free(call->signer);
	eg_policy_unref(call->pol);
	free(call);
}

/* The answer left (written to the client's socket): a drain may end now. */
static void reply_sent_cb(struct evhttp_request *req, void *arg)
{
	struct eg_cmp *c = arg;
	(void)req;
	c->calls--;
	eg_server_exit_if_drained(c->srv);
}

/* An HTTP-level refusal (path, method, media type): no CMP message to answer. Ends the call. */
static void http_fail(struct cmp_call *call, int code, const char *result, const char *reason)
{
	eg_http_send_text(call->req, code, reason);
	audit(call, code, result, reason, NULL, NULL);
	call_free(call);
}

/* Refuse the message the way a CA would: an unprotected CMP error message answering it, with
 * the failInfo and text policies.errors gives the reason (plus detail for policy denials).
 * Never reaches the CA. Ends the call. */
static void cmp_fail(struct cmp_call *call, enum eg_cmp_reason why, const char *detail, const char *client_detail)
{
	const struct eg_cmp_error *e = &call->pol->cmp->errors[why];
	char text[400];
	if (client_detail && client_detail[0])
		snprintf(text, sizeof(text), "%s: %s", e->text, client_detail);
	else
		snprintf(text, sizeof(text), "%s", e->text);
	size_t len = 0;
	unsigned char *der = eg_cmp_error_der(call->msg, e->failinfo, text, &len);
	struct evbuffer *b = der ? evbuffer_new() : NULL;
	if (!b || evbuffer_add(b, der, len) < 0) {
		OPENSSL_free(der);
		if (b)
			evbuffer_free(b);
		http_fail(call, 500, "internal-error", "cannot build the CMP error message");
		return;
	}
	OPENSSL_free(der);
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "Content-Type", "application/pkixcmp");
	evhttp_add_header(evhttp_request_get_output_headers(call->req), "Cache-Control", "no-cache");
	eg_http_send_reply(call->req, 200, "OK", b);
	evbuffer_free(b);
	audit(call, 200, eg_cmp_reason_name(why), detail ? detail : text, "error", NULL);
	call_free(call);
}

/* ---- the CA ---- */

/* The backend is done: relay the CA's answer unchanged, or answer with a CMP error. Ends the call. */
static void backend_reply_cb(const struct eg_cmp_backend_answer *r, void *arg)
{
	struct cmp_call *call = arg;
	snprintf(call->upstream, sizeof(call->upstream), "%s", r->upstream ? r->upstream : "");
	if (r->result == EG_CMP_BACKEND_NO_ANSWER) {
		cmp_fail(call, EG_CMP_R_UPSTREAM_TIMEOUT, "the CA took the message and did not answer in time", NULL);
		return;
	}
	if (r->result == EG_CMP_BACKEND_BROKEN_ANSWER) {
		/* RFC 6712 has no CMP answer for this: the CA has the message and its answer is lost */
		http_fail(call, 500, "upstream-broken", "the CA's answer failed part-way");
		return;
	}
	if (r->result == EG_CMP_BACKEND_DOWN) {
		cmp_fail(call, EG_CMP_R_UPSTREAM_DOWN, r->tried ? "no upstream CA answered" : "every upstream CA is marked down",
			 NULL);
		return;
	}
	int code = r->status;
	struct evbuffer *in = r->body;
	/* what the CA said, for the audit record only: its answer goes back unchanged. The body type
	 * comes from the outer DER structure; only an error message is decoded, for its text. */
	const char *answer = NULL;
	char status[300] = "";
	size_t n = in ? evbuffer_get_length(in) : 0;
	const unsigned char *der = code == 200 && n > 0 ? evbuffer_pullup(in, -1) : NULL;
	int type = der ? eg_cmp_peek_body_type(der, n) : -1;
	if (type >= 0)
		answer = eg_cmp_type_name(type);
	if (type == EG_CMP_ERROR) {
		struct eg_cmp_msg *a = NULL;
		char why[160];
		if (eg_cmp_parse(der, n, &a, why, sizeof(why)) != EG_CMP_OK || eg_cmp_error_text(a, status, sizeof(status)) < 0)
			status[0] = '\0';
		eg_cmp_msg_free(a);
	}
	struct evkeyvalq *oh = evhttp_request_get_output_headers(call->req);
	evhttp_add_header(oh, "Content-Type", r->content_type ? r->content_type : "application/octet-stream");
	evhttp_add_header(oh, "Cache-Control", "no-cache");
	eg_http_send_reply(call->req, code, r->status_line, in);
	audit(call, code, code == 200 && answer ? "relayed" : "relayed-other", NULL, answer, status[0] ? status : NULL);
	call_free(call);
}

/* Hand the checked message to the alias' backend; backend_reply_cb() carries on. */
static void relay(struct cmp_call *call)
{
	int b = call->alias->backend;
	struct evbuffer *body = evhttp_request_get_input_buffer(call->req);
	eg_cmp_backends[b]->send(call->cmp->backend_state[b], call->pol->cmp, call->alias, evbuffer_pullup(body, -1),
				 evbuffer_get_length(body), backend_reply_cb, call);
}

/* ---- checks ---- */

static enum eg_cmp_reason reason_of(const char *r)
{
	for (int i = 0; i < EG_CMP_R_COUNT; i++)
		if (strcmp(eg_cmp_reason_name((enum eg_cmp_reason)i), r) == 0)
			return (enum eg_cmp_reason)i;
	return EG_CMP_R_POLICY_ERROR;
}

/* The message's protection against the alias' rules: -1 when it passes (call->protection
 * set), else the reason with detail filled. */
static int check_protection(struct cmp_call *call, char *detail, size_t cap)
{
	const struct eg_cmp_msg *m = call->msg;
	struct eg_cmp_alias *a = call->alias;
	switch (m->protection) {
	case EG_CMP_PROT_NONE:
		if (!(a->protection & EG_CMP_ALLOW_NONE)) {
			snprintf(detail, cap, "message is not protected");
			return EG_CMP_R_UNPROTECTED;
		}
		call->protection = "none";
		return -1;
	case EG_CMP_PROT_MAC: {
		if (!(a->protection & EG_CMP_ALLOW_MAC)) {
			snprintf(detail, cap, "MAC protection is not accepted for this alias");
			return EG_CMP_R_PROTECTION_NOT_ALLOWED;
		}
		const struct eg_cmp_mac_key *k = m->kid_len ? eg_cmp_alias_mac_key(a, m->kid, m->kid_len) : NULL;
		if (!k) {
			snprintf(detail, cap, "no secret for keyId '%s'", m->sender_kid);
			return EG_CMP_R_MAC_UNKNOWN_KEY;
		}
		const char *r = eg_cmp_check_mac(m, k->secret, k->secret_len, detail, cap);
		if (r)
			return reason_of(r);
		call->protection = "mac";
		return -1;
	}
	case EG_CMP_PROT_SIGNATURE: {
		if (!(a->protection & EG_CMP_ALLOW_SIGNATURE)) {
			snprintf(detail, cap, "signature protection is not accepted for this alias");
			return EG_CMP_R_PROTECTION_NOT_ALLOWED;
		}
		const char *crl_error;
		X509_STORE *trust = eg_cmp_alias_trust(a, &crl_error);
		const char *r = eg_cmp_check_signature(m, trust, detail, cap);
		call->signer = eg_cmp_signer(m);
		if (r)
			return reason_of(r);
		if (crl_error) {   /* the old CRLs accept the signer; the newer ones cannot be read */
			snprintf(detail, cap, "%s", crl_error);
			return EG_CMP_R_REVOCATION_UNKNOWN;
		}
		call->protection = "signature";
		return -1;
	}
	default:
		snprintf(detail, cap, "protection algorithm %s is not supported", m->protection_alg);
		return EG_CMP_R_PROTECTION_UNSUPPORTED;
	}
}

/* Which alias a path names: /.well-known/cmp[/] (the default alias),
 * /.well-known/cmp/p/<alias>[/<operation>], <legacy_prefix><alias>. NULL if none. */
static struct eg_cmp_alias *route(const struct eg_cmp_conf *conf, const char *path)
{
	static const char wk[] = CMP_WELL_KNOWN, wkp[] = CMP_WELL_KNOWN "/p/";
	const char *name = NULL;
	size_t n = 0;
	if (strcmp(path, wk) == 0 || strcmp(path, CMP_WELL_KNOWN "/") == 0) {
		name = conf->default_alias;
		n = strlen(name);
	} else if (strncmp(path, wkp, sizeof(wkp) - 1) == 0) {
		name = path + sizeof(wkp) - 1;
		const char *slash = strchr(name, '/');
		n = slash ? (size_t)(slash - name) : strlen(name);
		if (slash && strchr(slash + 1, '/'))
			return NULL; /* at most one operation segment after the alias */
	} else if (conf->legacy_prefix[0] && strncmp(path, conf->legacy_prefix, strlen(conf->legacy_prefix)) == 0) {
		name = path + strlen(conf->legacy_prefix);
		n = strlen(name);
		if (n > 0 && name[n - 1] == '/')
			n--;
		if (memchr(name, '/', n))
			return NULL;
	}
	return name && n ? eg_cmp_conf_alias(conf, name, n) : NULL;
}

/* ---- client requests ---- */

static void cmp_request_cb(struct evhttp_request *req, void *arg)
{
	struct eg_cmp *c = arg;
	struct cmp_call *call = calloc(1, sizeof(*call));
	if (!call) {
		eg_http_send_text(req, 503, "out of memory");
		return;
	}
	call->cmp = c;
	c->calls++;
	evhttp_request_set_on_complete_cb(req, reply_sent_cb, c);
	call->req = req;
	call->t_start = mono();
	call->pol = eg_server_policy(c->srv);
	eg_http_peer(req, call->client, sizeof(call->client));
	const struct eg_cmp_conf *conf = call->pol->cmp;
	if (!conf) {
		http_fail(call, 404, "not-found", "CMP is not configured");
		return;
	}
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (!path || strlen(path) >= sizeof(call->path) || !(call->alias = route(conf, path))) {
		http_fail(call, 404, "not-found", "no CMP alias at this path");
		return;
	}
	snprintf(call->path, sizeof(call->path), "%s", path);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		http_fail(call, 405, "bad-request", "CMP messages are POSTed (RFC 6712)");
		return;
	}
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	if (!ct || strncasecmp(ct, "application/pkixcmp", 19) != 0 || (ct[19] && ct[19] != ';' && ct[19] != ' ')) {
		http_fail(call, 415, "bad-request", "expected Content-Type application/pkixcmp");
		return;
	}

	struct evbuffer *body = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(body);
	char detail[300];
	if (eg_cmp_parse(evbuffer_pullup(body, -1), n, &call->msg, detail, sizeof(detail)) != EG_CMP_OK) {
		cmp_fail(call, EG_CMP_R_BAD_MESSAGE, detail, NULL);
		return;
	}
	const struct eg_cmp_msg *m = call->msg;
	if (!(call->alias->types & (1u << m->body_type))) {
		snprintf(detail, sizeof(detail), "message type %s is not accepted for alias '%s'", eg_cmp_type_name(m->body_type),
			 call->alias->name);
		cmp_fail(call, EG_CMP_R_TYPE_NOT_ALLOWED, detail, NULL);
		return;
	}
	int why = check_protection(call, detail, sizeof(detail));
	if (why >= 0) {
		cmp_fail(call, (enum eg_cmp_reason)why, detail, NULL);
		return;
	}
	if (m->content_error) {
		cmp_fail(call, reason_of(m->content_error), m->content_detail, NULL);
		return;
	}

	/* policy: on_message(ctx) */
	struct eg_enroll_info ei = {
		.protocol = "cmp", .label = call->alias->name, .op = eg_cmp_type_name(m->body_type),
		.csr = m->nrequests ? m->requests[0] : NULL, .cmp = m, .protection = call->protection, .cert = call->signer,
	};
	struct eg_request_info ri = { .method = "POST", .host = "", .path = call->path, .client = call->client, .enroll = &ei };
	struct eg_verdict v;
	eg_policy_cmp(call->pol, &ri, &v);
	if (!v.allow) {
		int hook_error = v.stage && strcmp(v.stage, "hook-error") == 0;
		cmp_fail(call, hook_error ? EG_CMP_R_POLICY_ERROR : EG_CMP_R_DENIED, v.reason, hook_error ? NULL : v.reason);
		return;
	}
	relay(call);
}

/* With tls in cmp.lua, each connection gets an SSL from the newest server context. */
static struct bufferevent *cmp_bevcb(struct event_base *base, void *arg)
{
	struct eg_cmp *c = arg;
	struct eg_policy *p = c->srv->policy;
	if (p->cmp && p->cmp->server_ctx && p->cmp->server_ctx != c->ctx && SSL_CTX_up_ref(p->cmp->server_ctx) == 1) {
		SSL_CTX_free(c->ctx);
		c->ctx = p->cmp->server_ctx;
	}
	SSL *ssl = c->ctx ? SSL_new(c->ctx) : NULL;
	return ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
						    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)
		   : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

int eg_cmp_start(struct eg_server *srv)
{
	const struct eg_cmp_conf *conf = srv->policy->cmp;
	if (!conf)
		return 0;
	struct eg_cmp *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->srv = srv;
	srv->cmp = c;
	for (int i = 0; i < EG_CMP_NBACKENDS; i++)
		if (!(c->backend_state[i] = eg_cmp_backends[i]->open(srv->base, srv->dns)))
			return -1;
	c->http = evhttp_new(srv->base);
	if (!c->http)
		return -1;
	if (conf->server_ctx) {
		if (SSL_CTX_up_ref(conf->server_ctx) != 1)
			return -1;
		c->ctx = conf->server_ctx;
		evhttp_set_bevcb(c->http, cmp_bevcb, c);
	}
	evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
						   EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
	evhttp_set_max_headers_size(c->http, CMP_MAX_HEADERS);
	evhttp_set_max_body_size(c->http, CMP_MAX_BODY);
	evhttp_set_timeout(c->http, CMP_CLIENT_TIMEOUT);
	evhttp_set_gencb(c->http, cmp_request_cb, c);
	for (int i = 0; i < conf->nlisten; i++) {
		const char *a = conf->listen[i];
		evutil_socket_t fd = eg_listen_socket(a);
		struct evhttp_bound_socket *bs = fd >= 0 ? evhttp_accept_socket_with_handle(c->http, fd) : NULL;
		if (!bs) {
			if (fd >= 0)
				evutil_closesocket(fd);
			eg_log(EG_LOG_ERROR, "cmp", "cannot listen on %s", a);
			return -1;
		}
		int one = 1;
		setsockopt(evhttp_bound_socket_get_fd(bs), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->bound[c->nbound++] = bs;
		eg_log(EG_LOG_INFO, "cmp", "CMP listening on %s (%s, %d alias%s)", a, conf->server_ctx ? "https" : "http",
		       conf->naliases, conf->naliases == 1 ? "" : "es");
	}
	return 0;
}

int eg_cmp_busy(const struct eg_cmp *c)
{
	return c ? c->calls : 0;
}

void eg_cmp_stop_accepting(struct eg_cmp *c)
{
	for (int i = 0; c && i < c->nbound; i++)
		evhttp_del_accept_socket(c->http, c->bound[i]);
	if (c)
		c->nbound = 0;
}

void eg_cmp_render_metrics(struct eg_cmp *c, struct evbuffer *b)
{
	if (!c)
		return;
	evbuffer_add_printf(b, "# HELP enrollgate_cmp_messages_total CMP messages by alias, message type and result.\n"
			       "# TYPE enrollgate_cmp_messages_total counter\n");
	for (int i = 0; i < CMP_STAT_SLOTS && c->stats[i].result; i++) {
		char alias[160];
		eg_json_escape(alias, sizeof(alias), c->stats[i].alias, strlen(c->stats[i].alias));
		evbuffer_add_printf(b, "enrollgate_cmp_messages_total{alias=\"%s\",type=\"%s\",result=\"%s\"} %llu\n", alias,
				    c->stats[i].type, c->stats[i].result, c->stats[i].n);
	}
	if (c->stats_other)
		evbuffer_add_printf(b, "enrollgate_cmp_messages_total{alias=\"(other)\",type=\"(other)\",result=\"(other)\"} %llu\n",
				    c->stats_other);
}

void eg_cmp_free(struct eg_cmp *c)
{
	if (!c)
		return;
	for (int i = 0; i < EG_CMP_NBACKENDS; i++)
		if (c->backend_state[i])
			eg_cmp_backends[i]->close(c->backend_state[i]);
	if (c->http)
		evhttp_free(c->http);
	SSL_CTX_free(c->ctx);
	free(c);
}
