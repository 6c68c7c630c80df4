/* test_http_parse.c: unit tests of the HTTP/1.x head parser, target splitter and chunked scanner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http_parse.h"

static struct eg_http_head H; /* large: keep it off the stack */

static enum eg_http_err req(const char *s)
{
	memset(&H, 0xa5, sizeof(H)); /* the parser must not depend on a zeroed head */
	return eg_http_parse_request(s, strlen(s), &H);
}

static enum eg_http_err resp(const char *s, const char *method)
{
	memset(&H, 0xa5, sizeof(H));
	return eg_http_parse_response(s, strlen(s), method, strlen(method), &H);
}

static void assert_slice(struct eg_slice s, const char *lit)
{
	assert_non_null(s.p);
	if (s.n != strlen(lit) || memcmp(s.p, lit, s.n) != 0)
		fail_msg("slice '%.*s' != '%s'", (int)s.n, s.p, lit);
}

static int find_header(const char *name)
{
	for (int i = 0; i < H.nheaders; i++)
		if (eg_slice_ieq(H.headers[i].name, name))
			return i;
	return -1;
}

/* ---- request heads ---- */

static void test_get_absolute_form(void **state)
{
	(void)state;
	const char *s = "GET http://example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\nUser-Agent:   curl/8  \r\n"
			"Accept: */*\r\n\r\n";
	assert_int_equal(req(s), EG_HTTP_OK);
	assert_slice(H.method, "GET");
	assert_slice(H.target, "http://example.com/a/b?c=d");
	assert_int_equal(H.version_minor, 1);
	assert_int_equal(H.head_len, strlen(s));
	assert_int_equal(H.nheaders, 3);
	assert_int_equal(H.host_idx, 0);
	assert_slice(H.headers[0].name, "Host");
	assert_slice(H.headers[0].value, "example.com");
	assert_slice(H.headers[1].value, "curl/8"); /* OWS trimmed on both sides */
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(H.conn_close, 0);
	assert_int_equal(H.conn_keepalive, 0);
	assert_int_equal(H.has_upgrade, 0);
	assert_int_equal(H.expect_continue, 0);
	for (int i = 0; i < H.nheaders; i++)
		assert_int_equal(H.headers[i].hop_by_hop, 0);
}

static void test_head_len_excludes_body(void **state)
{
	(void)state;
	const char *head = "POST http://example.com/ HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n";
	char buf[256];
	snprintf(buf, sizeof(buf), "%shelloGET / HTTP/1.1\r\n\r\n", head);
	assert_int_equal(req(buf), EG_HTTP_OK);
	assert_int_equal(H.head_len, strlen(head));
	assert_int_equal(H.body, EG_BODY_LENGTH);
	assert_int_equal(H.content_length, 5);
}

static void test_incomplete(void **state)
{
	(void)state;
	const char *s = "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
	size_t n = strlen(s);
	for (size_t i = 0; i < n; i++) {
		memset(&H, 0, sizeof(H));
		enum eg_http_err e = eg_http_parse_request(s, i, &H);
		if (e != EG_HTTP_INCOMPLETE)
			fail_msg("prefix of %zu bytes: %d", i, (int)e);
	}
	memset(&H, 0, sizeof(H));
	assert_int_equal(eg_http_parse_request(s, n, &H), EG_HTTP_OK);
}

static void test_early_garbage_rejected(void **state)
{
	(void)state;
	/* a TLS ClientHello sent to the plain proxy port must not wait for a CRLF CRLF */
	const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
	memset(&H, 0, sizeof(H));
	assert_int_equal(eg_http_parse_request(tls, sizeof(tls) - 1, &H), EG_HTTP_BAD);
	assert_int_equal(req("G\x01T"), EG_HTTP_BAD);
	assert_int_equal(req("GET"), EG_HTTP_INCOMPLETE);
	assert_int_equal(req(""), EG_HTTP_INCOMPLETE);
}

static void test_connect_authority_form(void **state)
{
	(void)state;
	struct eg_target t;
	const char *why = NULL;
	assert_int_equal(req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"), EG_HTTP_OK);
	assert_slice(H.method, "CONNECT");
	assert_slice(H.target, "example.com:443");
	assert_int_equal(eg_http_parse_target(H.target.p, H.target.n, 1, &t, &why), 0);
	assert_int_equal(t.form, EG_TARGET_AUTHORITY);
	assert_string_equal(t.host, "example.com");
	assert_int_equal(t.port, 443);
	assert_int_equal(t.host_is_ip, 0);
	assert_null(t.path.p);
}

static void test_keepalive_semantics(void **state)
{
	(void)state;
	/* HTTP/1.1: persistent unless Connection: close */
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.conn_close, 0);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.conn_close, 1);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: foo,  CLOSE ,bar\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.conn_close, 1);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.conn_close, 0);
	/* HTTP/1.0: close unless Connection: keep-alive */
	assert_int_equal(req("GET / HTTP/1.0\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.version_minor, 0);
	assert_int_equal(H.conn_close, 1);
	assert_int_equal(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.conn_close, 0);
	assert_int_equal(H.conn_keepalive, 1);
	assert_int_equal(req("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.conn_close, 1);
}

static void test_content_length(void **state)
{
	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1234\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_LENGTH);
	assert_int_equal(H.content_length, 1234);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 0\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(H.content_length, 0);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 999999999999999999\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.content_length, 999999999999999999ULL);
	static const char *const bad[] = { "abc", "-1", "+1", "1 2", "5, 5", "0x10", "1.0",
					   "1000000000000000000", "99999999999999999999999", NULL };
	for (int i = 0; bad[i]; i++) {
		char buf[256];
		snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n", bad[i]);
		if (req(buf) != EG_HTTP_BAD)
			fail_msg("Content-Length '%s' accepted", bad[i]);
	}
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"), EG_HTTP_BAD);
}

static void test_chunked_request(void **state)
{
	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_CHUNKED);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: Chunked\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_CHUNKED);
}

static void test_reject_bare_lf(void **state)
{
	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\nHost: a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\nX-Smuggle: 1\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX: 1\n\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n"), EG_HTTP_BAD); /* bare CR */
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n"), EG_HTTP_BAD);
}

static void test_reject_obs_fold(void **state)
{
	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n two\r\n\r\n"), EG_HTTP_BAD);
	assert_string_equal(H.reason, "obsolete header line folding");
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX-Long: one\r\n\ttwo\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), EG_HTTP_BAD);
}

static void test_reject_space_before_colon(void **state)
{
	(void)state;
	assert_int_equal(req("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nNo-Colon\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX(y): 1\r\n\r\n"), EG_HTTP_BAD);
}

static void test_reject_cl_and_te(void **state)
{
	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
			 EG_HTTP_BAD);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
			 EG_HTTP_BAD);
	/* even when the TE would be unsupported: 400 wins over 501 */
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"),
			 EG_HTTP_BAD);
}

static void test_reject_duplicate_cl(void **state)
{
	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n"), EG_HTTP_BAD);
	assert_string_equal(H.reason, "duplicate Content-Length");
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-LENGTH: 6\r\n\r\n"), EG_HTTP_BAD);
}

static void test_unsupported_te(void **state)
{
	(void)state;
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n"), EG_HTTP_UNSUPPORTED_TE);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
			 EG_HTTP_UNSUPPORTED_TE);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
			 EG_HTTP_UNSUPPORTED_TE);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
			 EG_HTTP_UNSUPPORTED_TE);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), EG_HTTP_UNSUPPORTED_TE);
	assert_int_equal(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n"), EG_HTTP_UNSUPPORTED_TE);
}

static void test_te_in_http10(void **state)
{
	(void)state;
	assert_int_equal(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), EG_HTTP_BAD);
	assert_string_equal(H.reason, "Transfer-Encoding in HTTP/1.0");
}

static void test_h2_preface(void **state)
{
	(void)state;
	assert_int_equal(req("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), EG_HTTP_H2_PREFACE);
	assert_int_equal(req("PRI * HTTP/2.0"), EG_HTTP_H2_PREFACE); /* known before the head ends */
	assert_int_equal(req("PRI * HTTP/2"), EG_HTTP_INCOMPLETE);
	/* PRI as a method of HTTP/1.1 is just a method */
	assert_int_equal(req("PRI / HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_OK);
}

static void test_bad_version(void **state)
{
	(void)state;
	static const char *const v505[] = { "HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0", "HTTP/1.x", NULL };
	static const char *const v400[] = { "HTTP/1.10", "HTTP/11", "http/1.1", "HTTP/1.1 ", "HTTPS/1.1", "HTTP/1", "", NULL };
	char buf[128];
	for (int i = 0; v505[i]; i++) {
		snprintf(buf, sizeof(buf), "GET / %s\r\nHost: a\r\n\r\n", v505[i]);
		if (req(buf) != EG_HTTP_BAD_VERSION)
			fail_msg("version '%s': %d", v505[i], (int)req(buf));
	}
	for (int i = 0; v400[i]; i++) {
		snprintf(buf, sizeof(buf), "GET / %s\r\nHost: a\r\n\r\n", v400[i]);
		if (req(buf) != EG_HTTP_BAD)
			fail_msg("version '%s': %d", v400[i], (int)req(buf));
	}
}

static void test_request_line_shape(void **state)
{
	(void)state;
	assert_int_equal(req("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET /\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\n\r\n"), EG_HTTP_BAD); /* no Host */
}

static void test_missing_and_duplicate_host(void **state)
{
	(void)state;
	assert_int_equal(req("GET http://a/ HTTP/1.1\r\nAccept: */*\r\n\r\n"), EG_HTTP_BAD);
	assert_string_equal(H.reason, "missing Host header");
	assert_int_equal(req("GET http://a/ HTTP/1.0\r\n\r\n"), EG_HTTP_OK); /* optional in 1.0 */
	assert_int_equal(H.host_idx, -1);
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), EG_HTTP_BAD);
	assert_string_equal(H.reason, "duplicate Host");
	assert_int_equal(req("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n"), EG_HTTP_BAD);
	assert_int_equal(req("GET / HTTP/1.1\r\nX: 1\r\nhOsT: a\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.host_idx, 1);
}

static void build_many_headers(char *buf, size_t cap, int n)
{
	size_t o = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: a\r\n");
	for (int i = 1; i < n; i++)
		o += (size_t)snprintf(buf + o, cap - o, "X-%d: %d\r\n", i, i);
	snprintf(buf + o, cap - o, "\r\n");
}

static void test_too_many_headers(void **state)
{
	(void)state;
	static char buf[8192];
	build_many_headers(buf, sizeof(buf), EG_HTTP_MAX_HEADERS);
	assert_int_equal(req(buf), EG_HTTP_OK);
	assert_int_equal(H.nheaders, EG_HTTP_MAX_HEADERS);
	build_many_headers(buf, sizeof(buf), EG_HTTP_MAX_HEADERS + 1);
	assert_int_equal(req(buf), EG_HTTP_TOO_LARGE);
	build_many_headers(buf, sizeof(buf), 150);
	assert_int_equal(req(buf), EG_HTTP_TOO_LARGE);
}

static void test_control_chars(void **state)
{
	(void)state;
	static const char ctl[] = { 0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f };
	for (size_t i = 0; i < sizeof(ctl); i++) {
		char buf[128];
		int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: a%cb\r\n\r\n", 'Q');
		char *q = memchr(buf, 'Q', (size_t)n);
		*q = ctl[i];
		memset(&H, 0, sizeof(H));
		if (eg_http_parse_request(buf, (size_t)n, &H) != EG_HTTP_BAD)
			fail_msg("control 0x%02x in a header value accepted", ctl[i]);
		/* in the target */
		n = snprintf(buf, sizeof(buf), "GET /aQb HTTP/1.1\r\nHost: a\r\n\r\n");
		q = memchr(buf, 'Q', (size_t)n);
		*q = ctl[i];
		memset(&H, 0, sizeof(H));
		if (eg_http_parse_request(buf, (size_t)n, &H) != EG_HTTP_BAD)
			fail_msg("control 0x%02x in the target accepted", ctl[i]);
		/* in a header name */
		n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nXQ: 1\r\n\r\n");
		q = memchr(buf, 'Q', (size_t)n);
		*q = ctl[i];
		memset(&H, 0, sizeof(H));
		if (eg_http_parse_request(buf, (size_t)n, &H) != EG_HTTP_BAD)
			fail_msg("control 0x%02x in a header name accepted", ctl[i]);
	}
	/* HTAB and obs-text are fine in values */
	assert_int_equal(req("GET / HTTP/1.1\r\nHost: a\r\nX: a\tb \xe2\x82\xac\r\n\r\n"), EG_HTTP_OK);
	assert_slice(H.headers[1].value, "a\tb \xe2\x82\xac");
	/* non-ASCII in the target is not */
	assert_int_equal(req("GET /\xe2\x82\xac HTTP/1.1\r\nHost: a\r\n\r\n"), EG_HTTP_BAD);
}

static void test_hop_by_hop(void **state)
{
	(void)state;
	const char *s = "GET http://a/ HTTP/1.1\r\n"
			"Host: a\r\n"
			"Connection: keep-alive, X-Private, x-other\r\n"
			"Keep-Alive: timeout=5\r\n"
			"Proxy-Connection: keep-alive\r\n"
			"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"
			"TE: trailers\r\n"
			"Trailer: X-Sum\r\n"
			"Upgrade: websocket\r\n"
			"X-Private: secret\r\n"
			"X-Other: 1\r\n"
			"X-Public: 2\r\n"
			"Proxy-Authenticate: Basic\r\n"
			"Expect: 100-continue\r\n"
			"\r\n";
	assert_int_equal(req(s), EG_HTTP_OK);
	static const char *const hop[] = { "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "TE",
					   "Trailer", "Upgrade", "X-Private", "X-Other", "Proxy-Authenticate", NULL };
	static const char *const e2e[] = { "Host", "X-Public", "Expect", NULL };
	for (int i = 0; hop[i]; i++) {
		int k = find_header(hop[i]);
		assert_true(k >= 0);
		if (!H.headers[k].hop_by_hop)
			fail_msg("%s not marked hop-by-hop", hop[i]);
	}
	for (int i = 0; e2e[i]; i++) {
		int k = find_header(e2e[i]);
		assert_true(k >= 0);
		if (H.headers[k].hop_by_hop)
			fail_msg("%s marked hop-by-hop", e2e[i]);
	}
	assert_int_equal(H.has_upgrade, 1);
	assert_int_equal(H.expect_continue, 1);
	assert_int_equal(H.conn_keepalive, 1);

	/* a second Connection header counts too; a header named by Connection before it appears */
	assert_int_equal(req("GET / HTTP/1.1\r\nX-A: 1\r\nHost: a\r\nConnection: close\r\nconnection: x-a\r\n\r\n"),
			 EG_HTTP_OK);
	assert_int_equal(H.headers[0].hop_by_hop, 1);
	assert_int_equal(H.headers[1].hop_by_hop, 0);
	/* "x-a" is a token, not a prefix */
	assert_int_equal(req("GET / HTTP/1.1\r\nX-Ab: 1\r\nHost: a\r\nConnection: x-a\r\n\r\n"), EG_HTTP_OK);
	assert_int_equal(H.headers[0].hop_by_hop, 0);
}

/* A header named by Connection is hop-by-hop whatever the length of its name (RFC 9110 §7.6.1). */
static void test_hop_by_hop_long_name(void **state)
{
	(void)state;
	char name[80], buf[512];
	memset(name, 'x', 70);
	name[70] = '\0';
	snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nConnection: %s\r\n%s: secret\r\n\r\n", name, name);
	assert_int_equal(req(buf), EG_HTTP_OK);
	assert_int_equal(H.headers[2].hop_by_hop, 1);
}

static void test_slice_ieq(void **state)
{
	(void)state;
	struct eg_slice s = { "Content-Length: 5", 14 };
	assert_true(eg_slice_ieq(s, "content-length"));
	assert_false(eg_slice_ieq(s, "content-lengt"));
	assert_false(eg_slice_ieq(s, "content-length:"));
	struct eg_slice e = { "", 0 };
	assert_true(eg_slice_ieq(e, ""));
}

/* ---- request targets ---- */

static int target(const char *s, int is_connect, struct eg_target *t)
{
	const char *why = NULL;
	int rc = eg_http_parse_target(s, strlen(s), is_connect, t, &why);
	if (rc < 0)
		assert_non_null(why);
	return rc;
}

static void test_target_absolute(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("http://Host.Example.COM:8080/path/x?q=1&r", 0, &t), 0);
	assert_int_equal(t.form, EG_TARGET_ABSOLUTE);
	assert_string_equal(t.host, "host.example.com");
	assert_int_equal(t.host_is_ip, 0);
	assert_int_equal(t.port, 8080);
	assert_slice(t.path, "/path/x?q=1&r");
	assert_int_equal(t.https, 0);

	assert_int_equal(target("http://example.com", 0, &t), 0);
	assert_int_equal(t.port, 80);
	assert_slice(t.path, "/");
	assert_int_equal(target("HTTP://example.com/", 0, &t), 0);
	assert_int_equal(t.port, 80);

	assert_int_equal(target("https://example.com/x", 0, &t), 0);
	assert_int_equal(t.https, 1);
	assert_int_equal(t.port, 443);
	assert_slice(t.path, "/x");
	assert_int_equal(target("https://example.com:8443", 0, &t), 0);
	assert_int_equal(t.port, 8443);

	assert_int_equal(target("http://192.0.2.1:81/", 0, &t), 0);
	assert_string_equal(t.host, "192.0.2.1");
	assert_int_equal(t.host_is_ip, 4);
	assert_int_equal(t.port, 81);
}

static void test_target_other_forms(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("/index.html?x", 0, &t), 0);
	assert_int_equal(t.form, EG_TARGET_ORIGIN);
	assert_slice(t.path, "/index.html?x");
	assert_int_equal(target("*", 0, &t), 0);
	assert_int_equal(t.form, EG_TARGET_ASTERISK);
	/* authority-form only for CONNECT, and CONNECT only takes authority-form */
	assert_int_equal(target("example.com:443", 0, &t), -1);
	assert_int_equal(target("http://example.com/", 1, &t), -1);
	assert_int_equal(target("/x", 1, &t), -1);
	assert_int_equal(target("*", 1, &t), -1);
	assert_int_equal(target("ftp://example.com/", 0, &t), -1);
	assert_int_equal(target("http:/example.com/", 0, &t), -1);
	assert_int_equal(target("http:///x", 0, &t), -1);
	assert_int_equal(target("http://", 0, &t), -1);
	assert_int_equal(target("", 0, &t), -1);
	assert_int_equal(target("", 1, &t), -1);
	assert_int_equal(target("http://example.com#frag", 0, &t), -1);
}

static void test_target_ipv6(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("[::1]:443", 1, &t), 0);
	assert_int_equal(t.form, EG_TARGET_AUTHORITY);
	assert_string_equal(t.host, "::1");
	assert_int_equal(t.host_is_ip, 6);
	assert_int_equal(t.port, 443);
	assert_int_equal(target("http://[2001:DB8:0:0::1]:8080/x", 0, &t), 0);
	assert_string_equal(t.host, "2001:db8::1"); /* canonical text form */
	assert_int_equal(t.port, 8080);
	assert_int_equal(target("http://[::ffff:127.0.0.1]/", 0, &t), 0);
	assert_int_equal(t.host_is_ip, 6);
	assert_int_equal(t.port, 80);
	assert_int_equal(target("[::1]", 1, &t), -1);      /* no port */
	assert_int_equal(target("::1:443", 1, &t), -1);    /* unbracketed */
	assert_int_equal(target("[::1]443", 1, &t), -1);
	assert_int_equal(target("[::1:443", 1, &t), -1);
	assert_int_equal(target("[fe80::1%25eth0]:443", 1, &t), -1); /* zone ids are not for a proxy */
	assert_int_equal(target("[1.2.3.4]:443", 1, &t), -1);
	assert_int_equal(target("[example.com]:443", 1, &t), -1);
	assert_int_equal(target("[]:443", 1, &t), -1);
}

static void test_target_userinfo(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("http://user:pass@example.com/", 0, &t), -1);
	assert_int_equal(target("http://evil.com@example.com/", 0, &t), -1);
	assert_int_equal(target("user@example.com:443", 1, &t), -1);
	/* an '@' in the path is not userinfo */
	assert_int_equal(target("http://example.com/@x", 0, &t), 0);
	assert_string_equal(t.host, "example.com");
}

static void test_target_ports(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("example.com:0", 1, &t), -1);
	assert_int_equal(target("example.com:65536", 1, &t), -1);
	assert_int_equal(target("example.com:99999", 1, &t), -1);
	assert_int_equal(target("example.com:100000", 1, &t), -1);
	assert_int_equal(target("example.com:-1", 1, &t), -1);
	assert_int_equal(target("example.com:+80", 1, &t), -1);
	assert_int_equal(target("example.com:8a", 1, &t), -1);
	assert_int_equal(target("example.com:", 1, &t), -1);
	assert_int_equal(target("example.com: 80", 1, &t), -1);
	assert_int_equal(target("example.com:443:443", 1, &t), -1);
	assert_int_equal(target("http://example.com:0/", 0, &t), -1);
	assert_int_equal(target("http://example.com:65536/", 0, &t), -1);
	assert_int_equal(target("http://example.com:/", 0, &t), -1);
	assert_int_equal(target("example.com:65535", 1, &t), 0);
	assert_int_equal(t.port, 65535);
	assert_int_equal(target("example.com:1", 1, &t), 0);
	assert_int_equal(t.port, 1);
}

static void test_connect_without_port(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("example.com", 1, &t), -1);
	assert_int_equal(req("CONNECT example.com HTTP/1.1\r\nHost: example.com\r\n\r\n"), EG_HTTP_OK);
	const char *why = NULL;
	assert_int_equal(eg_http_parse_target(H.target.p, H.target.n, 1, &t, &why), -1);
	assert_string_equal(why, "CONNECT target needs host:port");
}

static void test_host_normalisation(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("WWW.EXAMPLE.COM:443", 1, &t), 0);
	assert_string_equal(t.host, "www.example.com");
	assert_int_equal(target("example.com.:443", 1, &t), 0);
	assert_string_equal(t.host, "example.com");
	assert_int_equal(target("http://Example.Com./x", 0, &t), 0);
	assert_string_equal(t.host, "example.com");
	assert_int_equal(target("example.com..:443", 1, &t), -1);
	assert_int_equal(target(".example.com:443", 1, &t), -1);
	assert_int_equal(target("a..b:443", 1, &t), -1);
	assert_int_equal(target(".:443", 1, &t), -1);
	assert_int_equal(target("exa%6dple.com:443", 1, &t), -1);
	assert_int_equal(target("exa\\mple.com:443", 1, &t), -1);
	assert_int_equal(target("under_score-ok.example:443", 1, &t), 0);
	/* labels neither start nor end with '-' (RFC 1123 §2.1) */
	assert_int_equal(target("-:443", 1, &t), -1);
	assert_int_equal(target("-a.example:443", 1, &t), -1);
	assert_int_equal(target("a-.example:443", 1, &t), -1);
	assert_int_equal(target("example.a-:443", 1, &t), -1);
	assert_int_equal(target("a--b.example:443", 1, &t), 0);

	char out[256];
	assert_int_equal(eg_http_normalize_host("MiXeD.CaSe", 10, out, sizeof(out)), 0);
	assert_string_equal(out, "mixed.case");
	assert_int_equal(eg_http_normalize_host("[::1]", 5, out, sizeof(out)), 6);
	assert_string_equal(out, "::1");
	assert_int_equal(eg_http_normalize_host("10.0.0.1", 8, out, sizeof(out)), 4);
	assert_int_equal(eg_http_normalize_host("", 0, out, sizeof(out)), -1);
	assert_int_equal(eg_http_normalize_host("abc", 3, out, 3), -1); /* does not fit */
	assert_int_equal(eg_http_normalize_host("abc", 3, out, 4), 0);
	assert_string_equal(out, "abc");

	/* label and name lengths */
	char name[300];
	memset(name, 'a', 63);
	memcpy(name + 63, ".com", 5);
	assert_int_equal(eg_http_normalize_host(name, strlen(name), out, sizeof(out)), 0);
	memset(name, 'a', 64);
	memcpy(name + 64, ".com", 5);
	assert_int_equal(eg_http_normalize_host(name, strlen(name), out, sizeof(out)), -1);
	/* 253 characters is the longest name */
	size_t o = 0;
	while (o + 50 < 253) {
		memset(name + o, 'b', 49);
		name[o + 49] = '.';
		o += 50;
	}
	memset(name + o, 'c', 253 - o);
	name[253] = '\0';
	assert_int_equal(eg_http_normalize_host(name, 253, out, sizeof(out)), 0);
	name[253] = '.';
	assert_int_equal(eg_http_normalize_host(name, 254, out, sizeof(out)), 0); /* + root dot */
	name[253] = 'd';
	name[254] = '\0';
	assert_int_equal(eg_http_normalize_host(name, 254, out, sizeof(out)), -1);
}

static void test_ambiguous_ipv4(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("1.2.3:443", 1, &t), -1);
	assert_int_equal(target("http://1.2.3/", 0, &t), -1);
	assert_int_equal(target("4294967295:443", 1, &t), -1);
	assert_int_equal(target("2130706433:443", 1, &t), -1);
	assert_int_equal(target("127.1:443", 1, &t), -1);
	assert_int_equal(target("010.0.0.1:443", 1, &t), -1);
	assert_int_equal(target("1.2.3.4.5:443", 1, &t), -1);
	assert_int_equal(target("256.1.1.1:443", 1, &t), -1);
	assert_int_equal(target("1.2.3.4:443", 1, &t), 0);
	assert_int_equal(t.host_is_ip, 4);
	assert_int_equal(target("1.2.3.4.:443", 1, &t), 0); /* root dot stripped */
	assert_int_equal(t.host_is_ip, 4);
	assert_string_equal(t.host, "1.2.3.4");
	/* a name whose last label is numeric is not an address */
	assert_int_equal(target("host.123:443", 1, &t), 0);
	assert_int_equal(t.host_is_ip, 0);
}

/* An absolute-form target with a query but no path ("http://h?q"): the origin-form is "/?q"
 * (RFC 9112 §3.2.1), so the target says that a "/" goes before the path slice. */
static void test_target_query_without_path(void **state)
{
	(void)state;
	struct eg_target t;
	assert_int_equal(target("http://example.com?x=1", 0, &t), 0);
	assert_int_equal(t.path_slash, 1);
	assert_int_equal(t.path.n, 4);
	assert_memory_equal(t.path.p, "?x=1", 4);
	assert_int_equal(target("http://example.com/?x=1", 0, &t), 0);
	assert_int_equal(t.path_slash, 0);
	assert_int_equal(target("http://example.com", 0, &t), 0);
	assert_int_equal(t.path_slash, 0);
	assert_memory_equal(t.path.p, "/", 1);
}

/* ---- responses ---- */

static void test_response_status(void **state)
{
	(void)state;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello";
	assert_int_equal(resp(s, "GET"), EG_HTTP_OK);
	assert_int_equal(H.status, 200);
	assert_int_equal(H.version_minor, 1);
	assert_int_equal(H.body, EG_BODY_LENGTH);
	assert_int_equal(H.content_length, 5);
	assert_int_equal(H.head_len, strlen(s) - 5);
	assert_int_equal(H.nheaders, 2);
	assert_int_equal(resp("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.status, 404);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 599\r\nContent-Length: 0\r\n\r\n", "GET"), EG_HTTP_OK); /* no reason */
	assert_int_equal(H.status, 599);
	assert_int_equal(resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(resp("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.version_minor, 0);
	assert_int_equal(H.conn_close, 1);
	assert_int_equal(resp("HTTP/1.1 302 Found\r\nLocation: /x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "GET"),
			 EG_HTTP_OK);
	assert_int_equal(H.conn_close, 1);
	/* a response needs no Host */
	assert_int_equal(H.host_idx, -1);
}

static void test_response_bad(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"HTTP/1.1 20 OK\r\n\r\n",      "HTTP/1.1 2000 OK\r\n\r\n",  "HTTP/1.1 600 X\r\n\r\n",
		"HTTP/1.1 099 X\r\n\r\n",      "HTTP/1.1 2x0 OK\r\n\r\n",   "HTTP/2 200\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",     "HTTP/1.1  200 OK\r\n\r\n",  "HTTP/1.1 200 O\x01K\r\n\r\n",
		"HTTP/1.1 200 OK\nX: 1\r\n\r\n", "ICY 200 OK\r\n\r\n",      "HTTP/1.1 200 OK\r\nX : 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
		NULL,
	};
	for (int i = 0; bad[i]; i++)
		if (resp(bad[i], "GET") != EG_HTTP_BAD)
			fail_msg("accepted: %s", bad[i]);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"), EG_HTTP_UNSUPPORTED_TE);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\n", "GET"), EG_HTTP_INCOMPLETE);
	assert_int_equal(resp("HTTP/", "GET"), EG_HTTP_INCOMPLETE);
	assert_int_equal(resp("HTT", "GET"), EG_HTTP_INCOMPLETE);
	assert_int_equal(resp("<html>", "GET"), EG_HTTP_BAD); /* garbage detected early */
}

static void test_response_no_body(void **state)
{
	(void)state;
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "HEAD"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\n\r\n", "HEAD"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 304 Not Modified\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 100 Continue\r\n\r\n", "POST"), EG_HTTP_OK);
	assert_int_equal(H.status, 100);
	assert_int_equal(H.body, EG_BODY_NONE);
	/* only the exact method HEAD */
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", "HEADX"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_LENGTH);
}

static void test_response_until_close(void **state)
{
	(void)state;
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_UNTIL_CLOSE);
	assert_int_equal(resp("HTTP/1.0 200 OK\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_UNTIL_CLOSE);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_NONE);
	assert_int_equal(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), EG_HTTP_OK);
	assert_int_equal(H.body, EG_BODY_CHUNKED);
}

/* ---- chunked scanner ---- */

static enum eg_chunk_result feed_all(const char *s, size_t n, size_t *used)
{
	struct eg_chunked c;
	eg_chunked_init(&c);
	return eg_chunked_feed(&c, s, n, used);
}

static enum eg_chunk_result feed_str(const char *s, size_t *used)
{
	return feed_all(s, strlen(s), used);
}

/* Feed in pieces of `step` bytes; returns the result and the total bytes consumed. */
static enum eg_chunk_result feed_steps(const char *s, size_t n, size_t step, size_t *total)
{
	struct eg_chunked c;
	eg_chunked_init(&c);
	*total = 0;
	for (size_t off = 0; off < n; off += step) {
		size_t k = n - off < step ? n - off : step, used = 0;
		enum eg_chunk_result r = eg_chunked_feed(&c, s + off, k, &used);
		*total += used;
		if (r != EG_CHUNK_MORE)
			return r;
		assert_int_equal(used, k); /* MORE consumes everything */
	}
	return EG_CHUNK_MORE;
}

static const char BODY1[] = "5\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n";

static void test_chunked_whole(void **state)
{
	(void)state;
	size_t used = 0;
	assert_int_equal(feed_str(BODY1, &used), EG_CHUNK_DONE);
	assert_int_equal(used, strlen(BODY1));
	assert_int_equal(feed_str("0\r\n\r\n", &used), EG_CHUNK_DONE);
	assert_int_equal(used, 5);
	assert_int_equal(feed_str("a\r\n0123456789\r\n0\r\n\r\n", &used), EG_CHUNK_DONE);
	assert_int_equal(feed_str("000\r\n\r\n", &used), EG_CHUNK_DONE); /* leading zeros */
	assert_int_equal(feed_str("5 \r\nhello\r\n0\t\r\n\r\n", &used), EG_CHUNK_DONE); /* BWS */
}

static void test_chunked_byte_by_byte(void **state)
{
	(void)state;
	size_t n = strlen(BODY1), total;
	for (size_t step = 1; step <= n; step++) {
		enum eg_chunk_result r = feed_steps(BODY1, n, step, &total);
		if (r != EG_CHUNK_DONE || total != n)
			fail_msg("step %zu: result %d after %zu bytes", step, (int)r, total);
	}
	/* and every split into two pieces */
	for (size_t cut = 0; cut <= n; cut++) {
		struct eg_chunked c;
		size_t u1 = 0, u2 = 0;
		eg_chunked_init(&c);
		enum eg_chunk_result r = eg_chunked_feed(&c, BODY1, cut, &u1);
		if (cut < n) {
			assert_int_equal(r, EG_CHUNK_MORE);
			r = eg_chunked_feed(&c, BODY1 + cut, n - cut, &u2);
		}
		assert_int_equal(r, EG_CHUNK_DONE);
		assert_int_equal(u1 + u2, n);
	}
}

static void test_chunked_extensions(void **state)
{
	(void)state;
	size_t used, total;
	const char *s = "5;name=value\r\nhello\r\n3 ; a=\"q;uoted\"; b\r\nabc\r\n0;last\r\n\r\n";
	assert_int_equal(feed_str(s, &used), EG_CHUNK_DONE);
	assert_int_equal(used, strlen(s));
	assert_int_equal(feed_steps(s, strlen(s), 1, &total), EG_CHUNK_DONE);
	assert_int_equal(total, strlen(s));
	/* an extension line longer than the limit */
	static char big[6000];
	size_t o = (size_t)snprintf(big, sizeof(big), "1;x=");
	memset(big + o, 'y', 5000);
	o += 5000;
	memcpy(big + o, "\r\na\r\n0\r\n\r\n", 11);
	assert_int_equal(feed_all(big, strlen(big), &used), EG_CHUNK_ERROR);
}

static void test_chunked_trailers(void **state)
{
	(void)state;
	size_t used, total;
	const char *s = "4\r\nwiki\r\n0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n";
	assert_int_equal(feed_str(s, &used), EG_CHUNK_DONE);
	assert_int_equal(used, strlen(s));
	assert_int_equal(feed_steps(s, strlen(s), 1, &total), EG_CHUNK_DONE);
	assert_int_equal(total, strlen(s));
	/* trailers past the limit */
	static char big[20000];
	size_t o = (size_t)snprintf(big, sizeof(big), "0\r\n");
	for (int i = 0; i < 1000; i++)
		o += (size_t)snprintf(big + o, sizeof(big) - o, "X-T%04d: v\r\n", i);
	snprintf(big + o, sizeof(big) - o, "\r\n");
	assert_int_equal(feed_all(big, strlen(big), &used), EG_CHUNK_ERROR);
}

static void test_chunked_errors(void **state)
{
	(void)state;
	static const char *const bad[] = {
		"g\r\n",                       /* not hex */
		"\r\n",                        /* no digits */
		";ext\r\n",                    /* extension without size */
		" 5\r\n",                      /* leading space */
		"-5\r\n",
		"0x5\r\n",
		"5\r\nhelloX",                 /* data not followed by CRLF */
		"5\r\nhello\rX",
		"5\r\nhello\n",                /* bare LF after data */
		"5\nhello\r\n",                /* bare LF after size */
		"5;x\nhello\r\n",              /* bare LF after extension */
		"5\rhello",                    /* CR not followed by LF */
		"0\r\nX: a\n",                 /* bare LF in a trailer */
		"0\r\n\n",                     /* bare LF at the end */
		"0\r\n\r\r",
		"0\r\nX: a\rb\r\n\r\n",
		"1000000000000000\r\n",        /* 16 hex digits: too large */
		NULL,
	};
	for (int i = 0; bad[i]; i++) {
		size_t used = 0;
		enum eg_chunk_result r = feed_str(bad[i], &used);
		if (r != EG_CHUNK_ERROR)
			fail_msg("accepted chunked input #%d (result %d)", i, (int)r);
		assert_true(used <= strlen(bad[i]));
	}
	/* 15 hex digits are fine (the size is kept, the data is not) */
	size_t used = 0;
	assert_int_equal(feed_str("fffffffffffffff\r\n", &used), EG_CHUNK_MORE);
}

static void test_chunked_done_position(void **state)
{
	(void)state;
	char buf[256];
	const char *next = "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n";
	int n = snprintf(buf, sizeof(buf), "%s%s", BODY1, next);
	size_t used = 0;
	assert_int_equal(feed_all(buf, (size_t)n, &used), EG_CHUNK_DONE);
	assert_int_equal(used, strlen(BODY1));
	assert_memory_equal(buf + used, next, strlen(next));

	/* byte by byte: DONE on the last byte of the body, having used exactly that byte */
	struct eg_chunked c;
	eg_chunked_init(&c);
	size_t total = 0;
	enum eg_chunk_result r = EG_CHUNK_MORE;
	for (int i = 0; i < n && r == EG_CHUNK_MORE; i++) {
		r = eg_chunked_feed(&c, buf + i, 1, &used);
		total += used;
	}
	assert_int_equal(r, EG_CHUNK_DONE);
	assert_int_equal(total, strlen(BODY1));

	/* a scanner that is done takes nothing more */
	assert_int_equal(eg_chunked_feed(&c, "0", 1, &used), EG_CHUNK_ERROR);
	assert_int_equal(used, 0);
}

static void test_chunked_large_chunk(void **state)
{
	(void)state;
	static char data[65536];
	struct eg_chunked c;
	size_t used;
	memset(data, 'x', sizeof(data));
	eg_chunked_init(&c);
	assert_int_equal(eg_chunked_feed(&c, "100000\r\n", 8, &used), EG_CHUNK_MORE); /* 1 MiB */
	for (int i = 0; i < 16; i++) {
		assert_int_equal(eg_chunked_feed(&c, data, sizeof(data), &used), EG_CHUNK_MORE);
		assert_int_equal(used, sizeof(data));
	}
	assert_int_equal(eg_chunked_feed(&c, "\r\n0\r\n\r\nEXTRA", 12, &used), EG_CHUNK_DONE);
	assert_int_equal(used, 7);
	/* data that runs past the chunk size does not pass for a CRLF */
	eg_chunked_init(&c);
	assert_int_equal(eg_chunked_feed(&c, "2\r\nabc\r\n", 8, &used), EG_CHUNK_ERROR);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_absolute_form),
		cmocka_unit_test(test_head_len_excludes_body),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_early_garbage_rejected),
		cmocka_unit_test(test_connect_authority_form),
		cmocka_unit_test(test_keepalive_semantics),
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_chunked_request),
		cmocka_unit_test(test_reject_bare_lf),
		cmocka_unit_test(test_reject_obs_fold),
		cmocka_unit_test(test_reject_space_before_colon),
		cmocka_unit_test(test_reject_cl_and_te),
		cmocka_unit_test(test_reject_duplicate_cl),
		cmocka_unit_test(test_unsupported_te),
		cmocka_unit_test(test_te_in_http10),
		cmocka_unit_test(test_h2_preface),
		cmocka_unit_test(test_bad_version),
		cmocka_unit_test(test_request_line_shape),
		cmocka_unit_test(test_missing_and_duplicate_host),
		cmocka_unit_test(test_too_many_headers),
		cmocka_unit_test(test_control_chars),
		cmocka_unit_test(test_hop_by_hop),
		cmocka_unit_test(test_hop_by_hop_long_name),
		cmocka_unit_test(test_slice_ieq),
		cmocka_unit_test(test_target_absolute),
		cmocka_unit_test(test_target_other_forms),
		cmocka_unit_test(test_target_ipv6),
		cmocka_unit_test(test_target_userinfo),
		cmocka_unit_test(test_target_ports),
		cmocka_unit_test(test_connect_without_port),
		cmocka_unit_test(test_host_normalisation),
		cmocka_unit_test(test_ambiguous_ipv4),
		cmocka_unit_test(test_target_query_without_path),
		cmocka_unit_test(test_response_status),
		cmocka_unit_test(test_response_bad),
		cmocka_unit_test(test_response_no_body),
		cmocka_unit_test(test_response_until_close),
		cmocka_unit_test(test_chunked_whole),
		cmocka_unit_test(test_chunked_byte_by_byte),
		cmocka_unit_test(test_chunked_extensions),
		cmocka_unit_test(test_chunked_trailers),
		cmocka_unit_test(test_chunked_errors),
		cmocka_unit_test(test_chunked_done_position),
		cmocka_unit_test(test_chunked_large_chunk),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
