/* fuzz_http_head.c: libFuzzer target for the HTTP head parser, the target splitter and the
 * chunked scanner (core/http_parse.c). Besides "no crash, no sanitizer report" it checks
 * properties that the proxy relies on and traps when one does not hold:
 *   - every slice of a parsed head lies inside the head;
 *   - a normalised host is NUL-terminated, lower-case and normalises to itself;
 *   - the chunked scanner gives the same answer however its input is split.
 * Also built without libFuzzer by tests/unit (replay_corpus.c) to run the corpus in CI. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "http_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_slice(struct eg_slice s, const char *base, size_t len)
{
	if (!s.p)
		return;
	CHECK(s.p >= base && s.p + s.n <= base + len);
}

static void check_host(const struct eg_target *t)
{
	char again[256];
	size_t n = strnlen(t->host, sizeof(t->host));
	CHECK(n < sizeof(t->host));
	for (size_t i = 0; i < n; i++)
		CHECK(!(t->host[i] >= 'A' && t->host[i] <= 'Z'));
	if (t->form == EG_TARGET_ORIGIN || t->form == EG_TARGET_ASTERISK)
		return;
	CHECK(n > 0);
	CHECK(t->port != 0);
	/* normalisation is idempotent (IPv6 literals come back without brackets) */
	int kind = eg_http_normalize_host(t->host, n, again, sizeof(again));
	if (t->host_is_ip == 6) {
		CHECK(kind == -1 || kind == 0 || kind == 6); /* "::1" unbracketed is not a name */
	} else {
		CHECK(kind == t->host_is_ip);
		CHECK(strcmp(again, t->host) == 0);
	}
}

static void fuzz_target(const char *p, size_t n, int is_connect)
{
	struct eg_target t;
	const char *why = NULL;
	if (eg_http_parse_target(p, n, is_connect, &t, &why) == 0) {
		check_host(&t);
		/* the path is inside the target, or the literal "/" for an absolute URI without one */
		if (!(t.path.n == 1 && t.path.p[0] == '/'))
			check_slice(t.path, p, n);
		if (t.form == EG_TARGET_ABSOLUTE)
			CHECK(t.path.n > 0);
	} else {
		CHECK(why != NULL);
	}
}

static void check_head(const struct eg_http_head *h, const char *buf, size_t len)
{
	CHECK(h->head_len <= len);
	CHECK(h->nheaders >= 0 && h->nheaders <= EG_HTTP_MAX_HEADERS);
	check_slice(h->method, buf, h->head_len);
	check_slice(h->target, buf, h->head_len);
	for (int i = 0; i < h->nheaders; i++) {
		check_slice(h->headers[i].name, buf, h->head_len);
		check_slice(h->headers[i].value, buf, h->head_len);
		CHECK(h->headers[i].name.n > 0);
	}
	CHECK(h->host_idx >= -1 && h->host_idx < h->nheaders);
	CHECK(h->version_minor == 0 || h->version_minor == 1);
	if (h->body == EG_BODY_LENGTH)
		CHECK(h->content_length > 0);
	if (h->version_minor == 0)
		CHECK(h->body != EG_BODY_CHUNKED);
}

/* Scan with the chunked scanner whole, byte by byte and split at `cut`: same verdict and position. */
static void fuzz_chunked(const char *p, size_t n, size_t cut)
{
	struct eg_chunked c;
	size_t used = 0, total = 0;
	eg_chunked_init(&c);
	enum eg_chunk_result whole = eg_chunked_feed(&c, p, n, &used);
	CHECK(used <= n);
	if (whole == EG_CHUNK_MORE)
		CHECK(used == n);
	size_t whole_used = used;

	enum eg_chunk_result r = EG_CHUNK_MORE;
	eg_chunked_init(&c);
	for (size_t i = 0; i < n && r == EG_CHUNK_MORE; i++) {
		r = eg_chunked_feed(&c, p + i, 1, &used);
		CHECK(used <= 1);
		total += used;
	}
	CHECK(r == whole);
	if (whole == EG_CHUNK_DONE)
		CHECK(total == whole_used);

	if (cut > n)
		cut = n;
	eg_chunked_init(&c);
	r = eg_chunked_feed(&c, p, cut, &used);
	total = used;
	if (r == EG_CHUNK_MORE) {
		r = eg_chunked_feed(&c, p + cut, n - cut, &used);
		total += used;
	}
	CHECK(r == whole);
	if (whole == EG_CHUNK_DONE)
		CHECK(total == whole_used);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct eg_http_head h;
	const char *buf = (const char *)data;
	/* Copy into an exact-size allocation so that ASan sees any read past the end. */
	char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	buf = copy;

	enum eg_http_err e = eg_http_parse_request(buf, size, &h);
	if (e == EG_HTTP_OK) {
		check_head(&h, buf, size);
		CHECK(h.version_minor == 0 || h.host_idx >= 0);
		int is_connect = eg_slice_ieq(h.method, "CONNECT");
		fuzz_target(h.target.p, h.target.n, is_connect);
		fuzz_target(h.target.p, h.target.n, !is_connect);
		if (h.host_idx >= 0) {
			char host[256];
			struct eg_slice hv = h.headers[h.host_idx].value;
			(void)eg_http_normalize_host(hv.p, hv.n, host, sizeof(host));
		}
		if (h.body == EG_BODY_CHUNKED)
			fuzz_chunked(buf + h.head_len, size - h.head_len, size > 0 ? (size_t)data[0] : 0);
	} else if (e == EG_HTTP_INCOMPLETE) {
		/* an incomplete head may still be refused once more bytes come, never the reverse */
		CHECK(h.head_len == 0);
	}

	static const char *const methods[] = { "GET", "HEAD", "CONNECT", "" };
	const char *m = methods[size ? data[size - 1] % 4 : 0];
	e = eg_http_parse_response(buf, size, m, strlen(m), &h);
	if (e == EG_HTTP_OK) {
		check_head(&h, buf, size);
		CHECK(h.status >= 100 && h.status <= 599);
		if (strcmp(m, "HEAD") == 0)
			CHECK(h.body == EG_BODY_NONE);
		if (h.body == EG_BODY_CHUNKED)
			fuzz_chunked(buf + h.head_len, size - h.head_len, size / 2);
	}

	/* The raw input as a target of each kind, as a host, and as a chunked body. */
	fuzz_target(buf, size, 0);
	fuzz_target(buf, size, 1);
	{
		char out[256];
		int kind = eg_http_normalize_host(buf, size, out, sizeof(out));
		if (kind >= 0)
			CHECK(strlen(out) < sizeof(out));
		/* a small output buffer is never overrun */
		char small[8];
		kind = eg_http_normalize_host(buf, size, small, sizeof(small));
		if (kind >= 0)
			CHECK(strlen(small) < sizeof(small));
	}
	fuzz_chunked(buf, size, size ? data[0] : 0);
	free(copy);
	return 0;
}
