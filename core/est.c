/* est.c: the EST registration authority; see est.h.
 *
 * Device side: evhttp over bufferevent_openssl (one SSL per connection from the live
 * generation's server context). Upstream side: one evhttp_connection per attempt, over
 * bufferevent_openssl with the label's client context (trust anchors + the appliance identity),
 * tried in the configured order; an upstream that fails to answer is skipped for down_hold
 * seconds. Every request keeps a reference to the generation it started with. */
#include "est.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "certs_only.h"
#include "csr.h"
#include "est_auth.h"
#include "est_conf.h"
#include "http_reply.h"
#include "log.h"
#include "server.h"
#include "tls.h"
#include "upstream.h"

#define EST_PREFIX "/.well-known/est/"
#define EST_MAX_BODY (128 * 1024)      /* a PKCS#10 in base64 is a few KiB */
#define EST_MAX_HEADERS (16 * 1024)
#define EST_DEVICE_TIMEOUT 30          /* seconds a device connection may stall */
#define EST_MAX_ANSWER (1024 * 1024)   /* most bytes taken from an upstream answer */
#define EST_CACHE_SLOTS EG_EST_MAX_LABELS
#define EST_STAT_SLOTS 256

/* The last good cacerts answer of a label (kept across reloads while the label keeps its name
 * and its upstream URLs: the key is a digest of both). */
struct cacerts_cache {
	char label[65];
	int used;
	double stored_at;                  /* monotonic seconds */
	char content_type[128];
	char cte[32];                      /* Content-Transfer-Encoding, or "" */
	struct evbuffer *body;
};

/* Counter of EST requests by label and result, for /metrics. */
struct est_stat {
	char label[64];
	const char *result;                /* a static string */
	unsigned long long n;
};

struct eg_est {
	struct eg_server *srv;
	struct eg_pw_checker *pw;          /* Basic checks off the loop */
	struct eg_upstreams *up;           /* connection pool and health memory of the CAs */
	struct evhttp *http;
	SSL_CTX *ctx;                      /* server context new connections get (a reference) */
	struct cacerts_cache cache[EST_CACHE_SLOTS];
	struct est_stat stats[EST_STAT_SLOTS];
	unsigned long long stats_other;    /* label/result pairs beyond the table */
	int calls;                         /* device requests being answered */
	struct evhttp_bound_socket *bound[EG_MAX_LISTEN];
	int nbound;
};

/* One device request being relayed. Owns its generation reference and the upstream attempt. */
struct est_call {
	struct eg_est *est;
	struct evhttp_request *req;        /* the device's request (libevent frees it after the reply) */
	struct eg_policy *pol;
	const struct eg_est_label *label;
	char op[24];
	enum evhttp_cmd_type method;
	struct evbuffer *body;             /* what the upstream gets; NULL for GET */
	char path[256];
	int cert_ok;                       /* a client certificate that verified */
	struct eg_csr *cert_names;         /* its names, for on_enroll (ctx.device.cert) */
	double t_start;
	/* for the audit record */
	char client[64];
	char user[64];
	char cert_subject[256], cert_serial[80];
	char csr_subject[512], csr_names[512], key_desc[64];
	char upstream[512];
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- answers to the device ---- */

static void count_result(struct eg_est *e, const char *label, const char *result)
{
	for (int i = 0; i < EST_STAT_SLOTS; i++) {
		struct est_stat *s = &e->stats[i];
		if (!s->result) {
			snprintf(s->label, sizeof(s->label), "%s", label);
			s->result = result;
		}
		if (strcmp(s->result, result) == 0 && strcmp(s->label, label) == 0) {
			s->n++;
			return;
		}
	}
	e->stats_other++;
}

/* `outcome` must be a string literal: the metrics keep the pointer. */
static void audit(struct est_call *call, int status, const char *outcome, const char *detail,
		  const struct eg_certs_only *issued)
{
	struct eg_jbuf j;
	count_result(call->est, call->label ? call->label->name : "(none)", outcome);
	eg_jbuf_begin(&j, status >= 500 ? EG_LOG_WARN : EG_LOG_INFO, "enroll");
	eg_jbuf_str(&j, "protocol", "est");
	eg_jbuf_str(&j, "client", call->client);
	eg_jbuf_str(&j, "user", call->user[0] ? call->user : NULL);
	eg_jbuf_str(&j, "device_cert", call->cert_subject[0] ? call->cert_subject : NULL);
	eg_jbuf_str(&j, "device_cert_serial", call->cert_serial[0] ? call->cert_serial : NULL);
	eg_jbuf_str(&j, "label", call->label ? call->label->name : NULL);
	eg_jbuf_str(&j, "op", call->op);
	if (call->csr_subject[0] || call->key_desc[0]) {
		eg_jbuf_str(&j, "csr_subject", call->csr_subject);
		eg_jbuf_str(&j, "csr_names", call->csr_names);
		eg_jbuf_str(&j, "csr_key", call->key_desc);
	}
	eg_jbuf_str(&j, "upstream", call->upstream[0] ? call->upstream : NULL);
	eg_jbuf_int(&j, "status", status);
	eg_jbuf_str(&j, "result", outcome);
	if (detail)
		eg_jbuf_str(&j, "reason", detail);
	if (issued) {
		eg_jbuf_str(&j, "issued_subject", issued->subject);
		eg_jbuf_str(&j, "issued_serial", issued->serial);
		eg_jbuf_str(&j, "issued_not_after", issued->not_after);
	}
	eg_jbuf_double(&j, "duration_ms", (mono() - call->t_start) * 1e3);
	eg_jbuf_emit(&j);
}

static void call_free(struct est_call *call)
{
	eg_csr_free(call->cert_names);
	if (call->body)
		evbuffer_free(call->body);
	eg_policy_unref(call->pol);
	free(call);
}

/* The answer to a device left (written to its socket): a drain may end now. A device that
 * went away first never gets here; the drain then ends at its timeout. */
static void reply_sent_cb(struct evhttp_request *req, void *arg)
{
	struct eg_est *e = arg;
	(void)req;
	e->calls--;
	eg_server_exit_if_drained(e->srv);
}

/* Answer from enrollgate itself, audit, end of the call. */
static void call_fail(struct est_call *call, int code, const char *outcome, const char *reason)
{
	if (code == 503 && call->pol->est) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", call->pol->est->retry_after);
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "Retry-After", ra);
	}
	eg_http_send_text(call->req, code, reason);
	audit(call, code, outcome, reason, NULL);
	call_free(call);
}

static void set_nodelay(evutil_socket_t fd)
{
	int one = 1;
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- cacerts cache ---- */

/* Cache key of a label: hex SHA-256 over its name and upstream URLs. */
static void cache_key(const struct eg_est_label *lb, char out[65])
{
	unsigned char md[32];
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned int n = 0;
	out[0] = '\0';
	if (!m)
		return;
	EVP_DigestInit_ex(m, EVP_sha256(), NULL);
	EVP_DigestUpdate(m, lb->name, strlen(lb->name) + 1);
	for (int i = 0; i < lb->nup; i++)
		EVP_DigestUpdate(m, lb->up[i].url, strlen(lb->up[i].url) + 1);
	EVP_DigestFinal_ex(m, md, &n);
	EVP_MD_CTX_free(m);
	for (unsigned int i = 0; i < n && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static struct cacerts_cache *cache_of(struct eg_est *e, const char *label, int create)
{
	struct cacerts_cache *oldest = &e->cache[0];
	for (int i = 0; i < EST_CACHE_SLOTS; i++) {
		struct cacerts_cache *c = &e->cache[i];
		if (c->used && strcmp(c->label, label) == 0)
			return c;
		if (!c->used || c->stored_at < oldest->stored_at)
			oldest = c;
	}
	if (!create)
		return NULL;
	if (oldest->body)
		evbuffer_free(oldest->body);
	memset(oldest, 0, sizeof(*oldest));
	snprintf(oldest->label, sizeof(oldest->label), "%s", label);
	oldest->body = evbuffer_new();
	oldest->used = oldest->body != NULL;
	return oldest->used ? oldest : NULL;
}

static void cache_store(struct eg_est *e, const struct eg_est_label *lb, const char *ctype, const char *cte,
			struct evbuffer *body)
{
	char key[65];
	cache_key(lb, key);
	struct cacerts_cache *c = cache_of(e, key, 1);
	if (!c)
		return;
	evbuffer_drain(c->body, evbuffer_get_length(c->body));
	evbuffer_add(c->body, evbuffer_pullup(body, -1), evbuffer_get_length(body));
	snprintf(c->content_type, sizeof(c->content_type), "%s", ctype ? ctype : "application/pkcs7-mime");
	snprintf(c->cte, sizeof(c->cte), "%s", cte ? cte : "");
	c->stored_at = mono();
}

/* Answer cacerts from the cache when it is fresh enough (max_age seconds; negative: any age).
 * 1 if answered (the call is then finished), 0 if not. */
static int cache_answer(struct est_call *call, double max_age, const char *outcome)
{
	char key[65];
	cache_key(call->label, key);
	struct cacerts_cache *c = cache_of(call->est, key, 0);
	if (!c || (max_age >= 0 && mono() - c->stored_at > max_age))
		return 0;
	struct evkeyvalq *dh = evhttp_request_get_output_headers(call->req);
	evhttp_add_header(dh, "Content-Type", c->content_type);
	if (c->cte[0])
		evhttp_add_header(dh, "Content-Transfer-Encoding", c->cte);
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return 0;
	evbuffer_add(b, evbuffer_pullup(c->body, -1), evbuffer_get_length(c->body));
	eg_http_send_reply(call->req, 200, "OK", b);
	evbuffer_free(b);
	char age[64];
	snprintf(age, sizeof(age), "cached %.0f s ago", mono() - c->stored_at);
	audit(call, 200, outcome, age, NULL);
	call_free(call);
	return 1;
}

/* ---- the upstream CA ---- */

/* The DER of an EST 200 answer (base64, with or without line breaks): malloc'ed, or NULL. */
static unsigned char *answer_der(struct evbuffer *body, long *dl)
{
	size_t n = evbuffer_get_length(body);
	if (n == 0 || n > EST_MAX_ANSWER)
		return NULL;
	const char *txt = (const char *)evbuffer_pullup(body, -1);
	unsigned char *der = malloc(n);
	if (der && (*dl = eg_base64_decode_ws(txt, n, der, n)) > 0)
		return der;
	free(der);
	return NULL;
}

/* Whether an EST 200 answer is a certs-only PKCS#7 with at least one certificate; *desc names
 * the first one. Shape only, no key decoding (core/certs_only.c): the relay's path. */
static int answer_ok(struct evbuffer *body, struct eg_certs_only *desc)
{
	long dl = 0;
	unsigned char *der = answer_der(body, &dl);
	int ok = der && eg_certs_only_read(der, (size_t)dl, desc) == 0;
	free(der);
	return ok;
}

/* The certs-only PKCS#7 of an EST 200 answer decoded whole, or NULL if the body is not one with
 * at least one certificate (test-upstream, which prints the chain). The caller frees it;
 * pkcs7_cert() borrows from it. */
static PKCS7 *pkcs7_of(struct evbuffer *body)
{
	long dl = 0;
	unsigned char *der = answer_der(body, &dl);
	const unsigned char *p = der;
	PKCS7 *p7 = der ? d2i_PKCS7(NULL, &p, dl) : NULL;
	free(der);
	if (p7 && (!PKCS7_type_is_signed(p7) || !p7->d.sign || !p7->d.sign->cert || sk_X509_num(p7->d.sign->cert) < 1)) {
		PKCS7_free(p7);
		p7 = NULL;
	}
	return p7;
}

static X509 *pkcs7_cert(PKCS7 *p7, int i)
{
	return p7 && i < sk_X509_num(p7->d.sign->cert) ? sk_X509_value(p7->d.sign->cert, i) : NULL;
}

/* The upstream's answer (or that none came): relay it, or answer from the cache or with the
 * error module's text. Ends the call. */
static void upstream_reply_cb(const struct eg_upstream_reply *r, void *arg)
{
	struct est_call *call = arg;
	struct eg_est *e = call->est;
	const struct eg_est_conf *conf = call->pol->est;
	snprintf(call->upstream, sizeof(call->upstream), "%s", r->upstream);
	if (r->result == EG_UPSTREAM_NO_ANSWER) {
		/* the CA has the request and may act on it; the device asks again later */
		call_fail(call, conf->err_upstream_timeout.status, "upstream-timeout", conf->err_upstream_timeout.text);
		return;
	}
	if (r->result == EG_UPSTREAM_BROKEN_ANSWER) {
		/* the CA has the request and its answer is lost: a malformed answer to the device */
		call_fail(call, conf->err_bad_answer.status, "upstream-broken", conf->err_bad_answer.text);
		return;
	}
	if (r->result == EG_UPSTREAM_DOWN) {
		/* cacerts while every upstream is down: the last good answer, whatever its age */
		char label[sizeof(call->label->name)];
		snprintf(label, sizeof(label), "%s", call->label->name);  /* cache_answer() ends the call */
		if (strcmp(call->op, "cacerts") == 0 && conf->cacerts_cache > 0 && cache_answer(call, -1, "cached-upstream-down")) {
			eg_log(EG_LOG_WARN, "est", "label '%s': every upstream is down; cacerts served from cache", label);
			return;
		}
		char why[200];
		snprintf(why, sizeof(why), "%s%s", conf->err_upstream_down.text, r->tried ? "" : " (every upstream is marked down)");
		call_fail(call, conf->err_upstream_down.status, "upstream-down", why);
		return;
	}
	struct evhttp_request *ureq = r->answer;
	int code = evhttp_request_get_response_code(ureq);
	struct evbuffer *in = evhttp_request_get_input_buffer(ureq);
	struct evkeyvalq *uh = evhttp_request_get_input_headers(ureq);
	struct evkeyvalq *dh = evhttp_request_get_output_headers(call->req);
	const char *ctype = evhttp_find_header(uh, "Content-Type");
	struct eg_certs_only issued;
	int is_enroll = strcmp(call->op, "simpleenroll") == 0 || strcmp(call->op, "simplereenroll") == 0;
	if (code == 200 && (is_enroll || strcmp(call->op, "cacerts") == 0)) {
		/* an answer the device cannot use is not passed on as success */
		if (!answer_ok(in, &issued)) {
			call_fail(call, conf->err_bad_answer.status, "upstream-error", conf->err_bad_answer.text);
			return;
		}
	}
	if (code == 200 && strcmp(call->op, "cacerts") == 0 && conf->cacerts_cache > 0)
		cache_store(e, call->label, ctype, evhttp_find_header(uh, "Content-Transfer-Encoding"), in);
	/* a CA that names no media type: the one RFC 7030 gives the operation's answer */
	const char *deftype = code != 200 ? "application/octet-stream"
			      : strcmp(call->op, "csrattrs") == 0 ? "application/csrattrs"
			      : strcmp(call->op, "serverkeygen") == 0 ? "multipart/mixed"
			      : "application/pkcs7-mime; smime-type=certs-only";
	evhttp_add_header(dh, "Content-Type", ctype ? ctype : deftype);
	static const char *const pass[] = { "Content-Transfer-Encoding", "Retry-After", NULL };
	for (int i = 0; pass[i]; i++) {
		const char *v = evhttp_find_header(uh, pass[i]);
		if (v)
			evhttp_add_header(dh, pass[i], v);
	}
	/* the CA's own answer, relayed as it is: success, 202 + Retry-After, or its refusal */
	eg_http_send_reply(call->req, code, evhttp_request_get_response_code_line(ureq), in);
	audit(call, code, code == 200 ? "issued" : code == 202 ? "pending" : code < 400 ? "relayed" : "refused-by-ca",
	      NULL, is_enroll && code == 200 ? &issued : NULL);
	call_free(call);
}

/* Send the call to the label's upstreams; upstream_reply_cb() carries on. */
static void relay(struct est_call *call)
{
	const struct eg_est_conf *conf = call->pol->est;
	const struct eg_est_label *lb = call->label;
	struct eg_upstream_target t = {
		.up = lb->up, .nup = lb->nup, .client_ctx = lb->client_ctx, .verify_name = lb->verify_name,
		.connect_timeout = conf->timeouts.connect, .tls_timeout = conf->timeouts.tls,
		.response_timeout = conf->timeouts.response,
		.down_hold = conf->down_hold, .max_answer = EST_MAX_ANSWER,
	};
	char suffix[32];
	snprintf(suffix, sizeof(suffix), "/%s", call->op);
	const char *authz = lb->upstream_authz[0] ? lb->upstream_authz : NULL; /* HTTP Basic toward the CA */
	const char *get_headers[] = { "Accept", "*/*", authz ? "Authorization" : NULL, authz, NULL };
	const char *post_headers[] = { "Accept", "*/*", "Content-Type", "application/pkcs10",
				       "Content-Transfer-Encoding", "base64", authz ? "Authorization" : NULL, authz, NULL };
	eg_upstream_send(call->est->up, &t, call->method, suffix, call->body ? post_headers : get_headers,
			 call->body ? evbuffer_pullup(call->body, -1) : NULL,
			 call->body ? evbuffer_get_length(call->body) : 0, upstream_reply_cb, call);
}

/* ---- device requests ---- */

static int is_get_op(const char *op)
{
	return strcmp(op, "cacerts") == 0 || strcmp(op, "csrattrs") == 0;
}

/* The device is who it must be (or the operation needs no one): check the request itself,
 * ask on_enroll, relay. Owns call. */
static void est_authorized(struct est_call *call)
{
	struct evhttp_request *req = call->req;
	if (is_get_op(call->op)) {
		const struct eg_est_conf *conf = call->pol->est;
		if (strcmp(call->op, "cacerts") == 0 && conf->cacerts_cache > 0 && cache_answer(call, conf->cacerts_cache, "cached"))
			return;
		relay(call);
		return;
	}
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	if (!ct || strncasecmp(ct, "application/pkcs10", 18) != 0 || (ct[18] && ct[18] != ';' && ct[18] != ' ')) {
		call_fail(call, 415, "bad-request", "expected Content-Type application/pkcs10");
		return;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t n = evbuffer_get_length(in);
	struct eg_csr *csr = NULL;
	char why[200];
	if (eg_csr_parse(evbuffer_pullup(in, -1), n, &csr, why, sizeof(why)) != EG_CSR_OK) {
		call_fail(call, 400, "bad-request", why);
		return;
	}
	snprintf(call->csr_subject, sizeof(call->csr_subject), "%s", csr->subject_text);
	snprintf(call->key_desc, sizeof(call->key_desc), "%s%s%s/%d", csr->key_type, csr->curve[0] ? ":" : "", csr->curve,
		 csr->key_bits);
	size_t off = 0;
	for (int i = 0; i < csr->nsan && off < sizeof(call->csr_names) - 1; i++)
		off += (size_t)snprintf(call->csr_names + off, sizeof(call->csr_names) - off, "%s%s:%s", i ? "," : "",
					csr->san[i].type, csr->san[i].value);
	struct eg_enroll_info ei = {
		.protocol = "est", .label = call->label->name, .op = call->op, .csr = csr,
		.user = call->user[0] ? call->user : NULL, .cert = call->cert_names,
		.cert_serial = call->cert_serial[0] ? call->cert_serial : NULL,
	};
	struct eg_request_info ri = { .method = "POST", .host = "", .path = call->path, .client = call->client, .enroll = &ei };
	struct eg_verdict v;
	eg_policy_enroll(call->pol, &ri, &v);
	if (!v.allow) {
		eg_csr_free(csr);
		int st = v.status >= 400 && v.status <= 599 ? v.status : 403;
		call_fail(call, st, v.stage && strcmp(v.stage, "hook-error") == 0 ? "policy-error" : "denied", v.reason);
		return;
	}
	/* forward the request as received (DER re-encoded as one base64 line, RFC 8951) */
	call->body = evbuffer_new();
	unsigned char *b64 = malloc(4 * ((csr->der_len + 2) / 3) + 1);
	if (!call->body || !b64) {
		free(b64);
		eg_csr_free(csr);
		call_fail(call, 503, "internal-error", "out of memory");
		return;
	}
	int bl = EVP_EncodeBlock(b64, csr->der, (int)csr->der_len);
	evbuffer_add(call->body, b64, (size_t)bl);
	free(b64);
	eg_csr_free(csr);
	relay(call);
}

/* The authentication methods the call's label asks for its operation (EG_EST_AUTH_*; 0 = none). */
static int auth_needed(const struct est_call *call)
{
	return call->label->auth[eg_est_op(call->op)];
}

static void refuse_unauthenticated(struct est_call *call)
{
	int a = auth_needed(call);
	if (a & (EG_EST_AUTH_BASIC | EG_EST_AUTH_BOTH))
		evhttp_add_header(evhttp_request_get_output_headers(call->req), "WWW-Authenticate",
				  "Basic realm=\"enrollgate EST\", charset=\"UTF-8\"");
	call_fail(call, 401, "unauthenticated",
		  (a & EG_EST_AUTH_BOTH) ? "client certificate and password required"
		  : (a & EG_EST_AUTH_BASIC) && (a & EG_EST_AUTH_CERT) ? "client certificate or password required"
		  : (a & EG_EST_AUTH_BASIC) ? "password required" : "client certificate required");
}

/* The password check that ran off the loop is done. */
static void password_checked(int ok, const char *user, void *arg)
{
	struct est_call *call = arg;
	int a = auth_needed(call);
	if (ok)
		snprintf(call->user, sizeof(call->user), "%s", user);
	if (ok && ((a & EG_EST_AUTH_BASIC) || ((a & EG_EST_AUTH_BOTH) && call->cert_ok)))
		est_authorized(call);
	else
		refuse_unauthenticated(call);
}

static void est_request_cb(struct evhttp_request *req, void *arg)
{
	struct eg_est *e = arg;
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
	if (!ssl) {
		eg_http_send_text(req, 421, "TLS required");
		return;
	}
	struct est_call *call = calloc(1, sizeof(*call));
	if (!call) {
		eg_http_send_text(req, 503, "out of memory");
		return;
	}
	call->est = e;
	e->calls++;
	evhttp_request_set_on_complete_cb(req, reply_sent_cb, e);
	call->req = req;
	call->t_start = mono();
	call->pol = eg_server_policy(e->srv);
	call->method = evhttp_request_get_command(req);
	eg_http_peer(req, call->client, sizeof(call->client));
	const struct eg_est_conf *conf = call->pol->est;
	if (!conf) {
		call_fail(call, 404, "not-found", "EST is not configured");
		return;
	}

	/* /.well-known/est/<op> or /.well-known/est/<label>/<op> */
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	if (!path || strncmp(path, EST_PREFIX, sizeof(EST_PREFIX) - 1) != 0 || strlen(path) >= sizeof(call->path)) {
		call_fail(call, 404, "not-found", "not an EST path");
		return;
	}
	snprintf(call->path, sizeof(call->path), "%s", path);
	const char *rest = path + sizeof(EST_PREFIX) - 1, *slash = strchr(rest, '/');
	const char *label = slash ? rest : "", *op = slash ? slash + 1 : rest;
	size_t label_len = slash ? (size_t)(slash - rest) : 0;
	if (strchr(op, '/') || strlen(op) >= sizeof(call->op) || eg_est_op(op) < 0) {
		call_fail(call, 404, "not-found", "unknown EST operation");
		return;
	}
	snprintf(call->op, sizeof(call->op), "%s", op);
	call->label = eg_est_conf_label(conf, label, label_len);
	if (!call->label) {
		call_fail(call, 404, "not-found", "unknown EST label");
		return;
	}
	if (strcmp(op, "fullcmc") == 0) {
		call_fail(call, 501, "not-implemented", "fullcmc is not offered");
		return;
	}
	int get_op = is_get_op(op);
	if (get_op ? call->method != EVHTTP_REQ_GET : call->method != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", get_op ? "GET" : "POST");
		call_fail(call, 405, "bad-request", get_op ? "use GET" : "use POST");
		return;
	}

	/* who is asking: a verified client certificate, and a password only where it is needed */
	X509 *peer = SSL_get0_peer_certificate(ssl);
	call->cert_ok = peer && SSL_get_verify_result(ssl) == X509_V_OK;
	if (call->cert_ok) {
		eg_tls_describe_cert(peer, call->cert_subject, sizeof(call->cert_subject), call->cert_serial,
				     sizeof(call->cert_serial));
		call->cert_names = eg_csr_from_cert(peer);
	}
	int a = auth_needed(call);
	if (a == 0 || ((a & EG_EST_AUTH_CERT) && call->cert_ok)) {
		est_authorized(call);
		return;
	}
	if (!(a & EG_EST_AUTH_BASIC) && !((a & EG_EST_AUTH_BOTH) && call->cert_ok)) {
		refuse_unauthenticated(call);
		return;
	}
	const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
	char user[64] = "";
	switch (eg_pw_check(e->pw, conf, authz, user, sizeof(user), password_checked, call)) {
	case EG_PW_OK:
		password_checked(1, user, call);
		return;
	case EG_PW_PENDING:
		return; /* password_checked() carries on */
	case EG_PW_BUSY:
		call_fail(call, 503, "busy", "too many password checks at once; retry");
		return;
	default:
		refuse_unauthenticated(call);
		return;
	}
}

/* ---- device connections ---- */

/* Device connections open now (there is one EST instance per process). One is counted when
 * evhttp asks for its bufferevent, right after accept(), and uncounted when OpenSSL frees its SSL
 * (the bufferevent owns it, and evhttp frees the bufferevent with the connection), so one that
 * never sends a byte counts as well. At est.lua's max_connections the listeners stop accepting
 * (newcomers wait in the kernel's backlog) until one closes. */
static struct {
	int open;
	int ex_idx;           /* SSL ex_data slot of counted connections (-1: not made yet) */
	struct eg_est *est;   /* NULL once freed: SSLs freed after that only count down */
	int paused;
} est_conns = { 0, -1, NULL, 0 };

static int max_connections(const struct eg_est *e)
{
	const struct eg_policy *p = e->srv->policy;
	return p && p->est ? p->est->max_connections : EG_EST_MAX_CONNECTIONS;
}

static void set_accepting(struct eg_est *e, int on)
{
	for (int i = 0; i < e->nbound; i++) {
		struct evconnlistener *l = evhttp_bound_socket_get_listener(e->bound[i]);
		if (l)
			(void)(on ? evconnlistener_enable(l) : evconnlistener_disable(l));
	}
	est_conns.paused = !on;
	if (on)
		eg_log(EG_LOG_INFO, "est", "accepting device connections again (%d open)", est_conns.open);
	else
		eg_log(EG_LOG_WARN, "est", "max_connections (%d) device connections open: not accepting more until one closes",
		       est_conns.open);
}

/* OpenSSL's ex_data free function, called for every SSL freed in the process: ours carry the
 * EST instance. */
static void counted_ssl_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
	if (!ptr)
		return;
	est_conns.open--;
	struct eg_est *e = est_conns.est;
	if (e && est_conns.paused && e->nbound > 0 && est_conns.open < max_connections(e))
		set_accepting(e, 1); /* (not while draining: the listeners are gone) */
}

/* Each device connection gets an SSL from the newest server context (a reload may renew the
 * server certificate); connections already open keep theirs. Counted as above. */
static struct bufferevent *est_bevcb(struct event_base *base, void *arg)
{
	struct eg_est *e = arg;
	struct eg_policy *p = e->srv->policy;
	if (p->est && p->est->server_ctx != e->ctx && SSL_CTX_up_ref(p->est->server_ctx) == 1) {
		SSL_CTX_free(e->ctx);
		e->ctx = p->est->server_ctx;
	}
	SSL *ssl = SSL_new(e->ctx);
	if (!ssl) /* then the connection is plain, and every request on it is refused (421) */
		return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	struct bufferevent *bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
								 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev && est_conns.ex_idx >= 0 && SSL_set_ex_data(ssl, est_conns.ex_idx, e) == 1 &&
	    ++est_conns.open >= max_connections(e) && !est_conns.paused)
		set_accepting(e, 0);
	return bev;
}

int eg_est_start(struct eg_server *srv)
{
	const struct eg_est_conf *conf = srv->policy->est;
	if (!conf)
		return 0;
	struct eg_est *e = calloc(1, sizeof(*e));
	if (!e)
		return -1;
	e->srv = srv;
	srv->est = e;
	if (est_conns.ex_idx < 0)
		est_conns.ex_idx = CRYPTO_get_ex_new_index(CRYPTO_EX_INDEX_SSL, 0, NULL, NULL, NULL, counted_ssl_free);
	est_conns.est = e;
	est_conns.paused = 0;
	e->pw = eg_pw_checker_new(srv->wake);
	e->up = eg_upstreams_new(srv->base, srv->dns, "est", "enrollgate-est");
	if (!e->pw || !e->up)
		return -1;
	e->http = evhttp_new(srv->base);
	if (!e->http || SSL_CTX_up_ref(conf->server_ctx) != 1)
		return -1;
	e->ctx = conf->server_ctx;
	evhttp_set_allowed_methods(e->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
	evhttp_set_max_headers_size(e->http, EST_MAX_HEADERS);
	evhttp_set_max_body_size(e->http, EST_MAX_BODY);
	evhttp_set_timeout(e->http, EST_DEVICE_TIMEOUT);
	evhttp_set_bevcb(e->http, est_bevcb, e);
	evhttp_set_gencb(e->http, est_request_cb, e);
	for (int i = 0; i < conf->nlisten; i++) {
		const char *a = conf->listen[i];
		evutil_socket_t fd = eg_listen_socket(a);
		struct evhttp_bound_socket *bs = fd >= 0 ? evhttp_accept_socket_with_handle(e->http, fd) : NULL;
		if (!bs) {
			if (fd >= 0)
				evutil_closesocket(fd);
			eg_log(EG_LOG_ERROR, "est", "cannot listen on %s", a);
			return -1;
		}
		/* accepted sockets inherit it: an answer larger than one TLS record, and the handshake,
		 * leave in several writes, and Nagle would hold the last one for the device's delayed
		 * ACK (40 ms) */
		set_nodelay(evhttp_bound_socket_get_fd(bs));
		e->bound[e->nbound++] = bs;
		eg_log(EG_LOG_INFO, "est", "EST listening on %s (%d label%s)", a, conf->nlabels, conf->nlabels == 1 ? "" : "s");
	}
	return 0;
}

/* ---- enrollgate test-upstream ---- */

struct probe {
	int status;
	struct evbuffer *body;
	char tls[160];                     /* protocol, cipher, server certificate */
	struct evhttp_connection *conn;
};

static void probe_done_cb(struct evhttp_request *ureq, void *arg)
{
	struct probe *pr = arg;
	pr->status = ureq ? evhttp_request_get_response_code(ureq) : 0;
	if (pr->status) {
		evbuffer_add_buffer(pr->body, evhttp_request_get_input_buffer(ureq));
		SSL *ssl = bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(pr->conn));
		if (ssl)
			snprintf(pr->tls, sizeof(pr->tls), "%s, %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
	}
	event_base_loopexit(evhttp_connection_get_base(pr->conn), NULL);
}

static void print_cert(FILE *out, const char *indent, X509 *x)
{
	char subj[256], serial[80], fp[3 * EVP_MAX_MD_SIZE + 1] = "";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	eg_tls_describe_cert(x, subj, sizeof(subj), serial, sizeof(serial));
	if (X509_digest(x, EVP_sha256(), md, &mdlen) == 1)
		for (unsigned int i = 0; i < mdlen; i++)
			snprintf(fp + 3 * i, sizeof(fp) - 3 * i, "%02X%s", md[i], i + 1 < mdlen ? ":" : "");
	fprintf(out, "%s%s\n%s  serial %s\n%s  SHA-256 %s\n", indent, subj, indent, serial, indent, fp);
}

int eg_est_test_upstream(struct eg_policy *p, const char *label, FILE *out)
{
	const struct eg_est_conf *conf = p->est;
	if (!conf) {
		fprintf(out, "no est.lua in this configuration\n");
		return 1;
	}
	const struct eg_est_label *lb = eg_est_conf_label(conf, label, strlen(label));
	if (!lb) {
		fprintf(out, "no label \"%s\" in est.lua\n", label);
		return 1;
	}
	X509 *id = SSL_CTX_get0_certificate(lb->client_ctx);
	fprintf(out, "label \"%s\": identity used toward the CA:\n", label);
	if (id)
		print_cert(out, "  ", id);
	else
		fprintf(out, "  (none: no identity in est.lua)\n");
	int ok_count = 0;
	for (int i = 0; i < lb->nup; i++) {
		const struct eg_upstream *up = &lb->up[i];
		struct event_base *base = event_base_new();
		struct evdns_base *dns = base ? evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS) : NULL;
		struct probe pr = { .body = evbuffer_new() };
		SSL *ssl = base ? eg_upstream_ssl(lb->client_ctx, up, lb->verify_name) : NULL;
		struct bufferevent *bev = ssl ? bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
									       BEV_OPT_CLOSE_ON_FREE) : NULL;
		pr.conn = bev ? evhttp_connection_base_bufferevent_new(base, dns, bev, up->host, up->port) : NULL;
		struct evhttp_request *req = pr.conn && pr.body ? evhttp_request_new(probe_done_cb, &pr) : NULL;
		fprintf(out, "upstream %s:\n", up->url);
		if (req) {
			struct timeval tv = { (time_t)conf->timeouts.response, 0 };
			char path[300], hosthdr[300];
			evhttp_connection_set_timeout_tv(pr.conn, &tv);
			evhttp_connection_set_retries(pr.conn, 0);
			snprintf(hosthdr, sizeof(hosthdr), strchr(up->host, ':') ? "[%s]:%u" : "%s:%u", up->host, up->port);
			evhttp_add_header(evhttp_request_get_output_headers(req), "Host", hosthdr);
			snprintf(path, sizeof(path), "%s/cacerts", up->path);
			if (evhttp_make_request(pr.conn, req, EVHTTP_REQ_GET, path) == 0)
				event_base_dispatch(base);
		} else if (bev && !pr.conn) {
			bufferevent_free(bev);
		} else if (!bev) {
			SSL_free(ssl);
		}
		PKCS7 *p7 = NULL;
		if (pr.status == 0) {
			fprintf(out, "  FAILED: connection, TLS handshake (server certificate, our identity) or timeout\n");
		} else {
			fprintf(out, "  TLS %s; cacerts answered %d\n", pr.tls, pr.status);
			p7 = pr.status == 200 ? pkcs7_of(pr.body) : NULL;
			if (pr.status == 200 && !p7)
				fprintf(out, "  FAILED: the answer is not a base64 PKCS#7\n");
		}
		if (p7) {
			/* the whole chain the CA sent */
			fprintf(out, "  CA certificates (%d):\n", sk_X509_num(p7->d.sign->cert));
			for (int k = 0; pkcs7_cert(p7, k); k++)
				print_cert(out, "    ", pkcs7_cert(p7, k));
			PKCS7_free(p7);
			ok_count++;
		}
		if (pr.conn)
			evhttp_connection_free(pr.conn);
		if (pr.body)
			evbuffer_free(pr.body);
		if (dns)
			evdns_base_free(dns, 0);
		if (base)
			event_base_free(base);
	}
	fprintf(out, "%s: %d of %d upstream%s working\n", ok_count ? "OK" : "FAILED", ok_count, lb->nup,
		lb->nup == 1 ? "" : "s");
	return ok_count ? 0 : 1;
}

int eg_est_busy(const struct eg_est *e)
{
	return e ? e->calls : 0;
}

void eg_est_stop_accepting(struct eg_est *e)
{
	for (int i = 0; e && i < e->nbound; i++)
		evhttp_del_accept_socket(e->http, e->bound[i]);
	if (e)
		e->nbound = 0;
}

void eg_est_render_metrics(struct eg_est *e, struct evbuffer *b)
{
	if (!e)
		return;
	evbuffer_add_printf(b, "# HELP enrollgate_est_requests_total EST requests by label and result.\n"
			       "# TYPE enrollgate_est_requests_total counter\n");
	for (int i = 0; i < EST_STAT_SLOTS && e->stats[i].result; i++) {
		char label[160];
		eg_json_escape(label, sizeof(label), e->stats[i].label, strlen(e->stats[i].label));
		evbuffer_add_printf(b, "enrollgate_est_requests_total{label=\"%s\",result=\"%s\"} %llu\n", label,
				    e->stats[i].result, e->stats[i].n);
	}
	if (e->stats_other)
		evbuffer_add_printf(b, "enrollgate_est_requests_total{label=\"(other)\",result=\"(other)\"} %llu\n",
				    e->stats_other);
	evbuffer_add_printf(b, "# HELP enrollgate_est_connections Device connections open on the EST listeners.\n"
			       "# TYPE enrollgate_est_connections gauge\nenrollgate_est_connections %d\n",
			    est_conns.open);
}

void eg_est_free(struct eg_est *e)
{
	if (!e)
		return;
	est_conns.est = NULL;
	eg_pw_checker_free(e->pw);
	for (int i = 0; i < EST_CACHE_SLOTS; i++)
		if (e->cache[i].body)
			evbuffer_free(e->cache[i].body);
	eg_upstreams_free(e->up);
	if (e->http)
		evhttp_free(e->http);
	SSL_CTX_free(e->ctx);
	free(e);
}
