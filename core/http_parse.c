/* http_parse.c: strict HTTP/1.x head parser and chunked scanner (see http_parse.h). */
#include "http_parse.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

/* RFC 9110 tchar */
static const unsigned char tchar[256] = {
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
	['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
	['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
	['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
	['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
	['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

int eg_slice_ieq(struct eg_slice s, const char *lit)
{
	size_t l = strlen(lit);
	return s.n == l && strncasecmp(s.p, lit, l) == 0;
}

/* Find the end of the head: returns the length including CRLFCRLF, 0 if not there yet. */
static size_t find_head_end(const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	while (p + 3 < end) {
		const char *cr = memchr(p, '\r', (size_t)(end - p - 3));
		if (!cr)
			return 0;
		if (cr[1] == '\n' && cr[2] == '\r' && cr[3] == '\n')
			return (size_t)(cr + 4 - buf);
		p = cr + 1;
	}
	return 0;
}

/* Is tok (tl bytes) one of the comma-separated tokens of a header value? */
static int list_has_token_n(struct eg_slice v, const char *tok, size_t tl)
{
	size_t i = 0;
	while (i < v.n) {
		while (i < v.n && (v.p[i] == ' ' || v.p[i] == '\t' || v.p[i] == ','))
			i++;
		size_t s = i;
		while (i < v.n && v.p[i] != ',' && v.p[i] != ' ' && v.p[i] != '\t')
			i++;
		if (i - s == tl && strncasecmp(v.p + s, tok, tl) == 0)
			return 1;
		while (i < v.n && v.p[i] != ',')
			i++;
	}
	return 0;
}

static int list_has_token(struct eg_slice v, const char *tok)
{
	return list_has_token_n(v, tok, strlen(tok));
}

static int is_static_hop_by_hop(struct eg_slice name)
{
	static const char *const hop[] = { "connection", "keep-alive", "proxy-connection", "proxy-authorization",
					   "proxy-authenticate", "te", "trailer", "upgrade", NULL };
	for (int i = 0; hop[i]; i++)
		if (eg_slice_ieq(name, hop[i]))
			return 1;
	return 0;
}

/* Parse header lines from p (just after the start line) to the blank line. */
static enum eg_http_err parse_headers(const char *p, const char *end, struct eg_http_head *h)
{
	h->nheaders = 0;
	h->host_idx = -1;
	while (p < end) {
		if (p[0] == '\r') {
			if (p + 1 < end && p[1] == '\n')
				return EG_HTTP_OK;
			h->reason = "bad line ending";
			return EG_HTTP_BAD;
		}
		if (p[0] == ' ' || p[0] == '\t') {
			h->reason = "obsolete header line folding";
			return EG_HTTP_BAD;
		}
		const char *ns = p;
		while (p < end && tchar[(unsigned char)*p])
			p++;
		if (p == ns || p >= end || *p != ':') {
			h->reason = "malformed header name";
			return EG_HTTP_BAD;
		}
		struct eg_slice name = { ns, (size_t)(p - ns) };
		p++;
		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *vs = p;
		while (p < end && *p != '\r') {
			unsigned char c = (unsigned char)*p;
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				h->reason = "control character in header value";
				return EG_HTTP_BAD;
			}
			p++;
		}
		if (p + 1 >= end || p[1] != '\n') {
			h->reason = "bad line ending";
			return EG_HTTP_BAD;
		}
		const char *ve = p;
		while (ve > vs && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		p += 2;
		if (h->nheaders == EG_HTTP_MAX_HEADERS) {
			h->reason = "too many header fields";
			return EG_HTTP_TOO_LARGE;
		}
		struct eg_header *hd = &h->headers[h->nheaders++];
		hd->name = name;
		hd->value = (struct eg_slice){ vs, (size_t)(ve - vs) };
		hd->hop_by_hop = (unsigned)is_static_hop_by_hop(name);
	}
	h->reason = "truncated head";
	return EG_HTTP_BAD;
}

static int parse_uint(struct eg_slice v, uint64_t *out)
{
	uint64_t x = 0;
	if (v.n == 0 || v.n > 18)
		return -1;
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(v.p[i] - '0');
	}
	*out = x;
	return 0;
}

/* Framing and connection semantics shared by requests and responses. */
static enum eg_http_err derive(struct eg_http_head *h, int is_request)
{
	int ncl = 0, nte = 0;
	struct eg_slice te = { 0 };
	h->body = EG_BODY_NONE;
	h->content_length = 0;
	h->conn_close = h->conn_keepalive = h->has_upgrade = h->expect_continue = 0;
	for (int i = 0; i < h->nheaders; i++) {
		struct eg_header *hd = &h->headers[i];
		if (eg_slice_ieq(hd->name, "content-length")) {
			if (++ncl > 1 || parse_uint(hd->value, &h->content_length) < 0) {
				h->reason = ncl > 1 ? "duplicate Content-Length" : "invalid Content-Length";
				return EG_HTTP_BAD;
			}
		} else if (eg_slice_ieq(hd->name, "transfer-encoding")) {
			nte++;
			te = hd->value;
		} else if (eg_slice_ieq(hd->name, "connection")) {
			if (list_has_token(hd->value, "close"))
				h->conn_close = 1;
			if (list_has_token(hd->value, "keep-alive"))
				h->conn_keepalive = 1;
		} else if (eg_slice_ieq(hd->name, "upgrade")) {
			h->has_upgrade = 1;
		} else if (is_request && eg_slice_ieq(hd->name, "host")) {
			if (h->host_idx >= 0) {
				h->reason = "duplicate Host";
				return EG_HTTP_BAD;
			}
			h->host_idx = i;
		} else if (is_request && eg_slice_ieq(hd->name, "expect")) {
			if (eg_slice_ieq(hd->value, "100-continue"))
				h->expect_continue = 1;
		}
	}
	/* Headers named by Connection are hop-by-hop too. */
	for (int i = 0; i < h->nheaders; i++) {
		if (!eg_slice_ieq(h->headers[i].name, "connection"))
			continue;
		for (int k = 0; k < h->nheaders; k++) {
			struct eg_slice n = h->headers[k].name;
			if (list_has_token_n(h->headers[i].value, n.p, n.n))
				h->headers[k].hop_by_hop = 1;
		}
	}
	if (nte) {
		if (ncl) {
			h->reason = "both Content-Length and Transfer-Encoding";
			return EG_HTTP_BAD;
		}
		if (h->version_minor == 0) {
			h->reason = "Transfer-Encoding in HTTP/1.0";
			return EG_HTTP_BAD;
		}
		if (nte > 1 || !eg_slice_ieq(te, "chunked")) {
			h->reason = "only Transfer-Encoding: chunked is supported";
			return EG_HTTP_UNSUPPORTED_TE;
		}
		h->body = EG_BODY_CHUNKED;
	} else if (ncl) {
		h->body = h->content_length ? EG_BODY_LENGTH : EG_BODY_NONE;
	}
	if (h->version_minor == 0 && !h->conn_keepalive)
		h->conn_close = 1;
	return EG_HTTP_OK;
}

enum eg_http_err eg_http_parse_request(const char *buf, size_t len, struct eg_http_head *h)
{
	size_t hl = find_head_end(buf, len);
	memset(h, 0, offsetof(struct eg_http_head, headers));
	h->host_idx = -1;
	/* HTTP/2 prior knowledge: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" */
	if (len >= 4 && memcmp(buf, "PRI ", 4) == 0) {
		if (len >= 14 && memcmp(buf, "PRI * HTTP/2.0", 14) == 0) {
			h->reason = "HTTP/2 is not supported";
			return EG_HTTP_H2_PREFACE;
		}
	}
	if (!hl) {
		/* Reject garbage early instead of waiting for a head that never ends. */
		for (size_t i = 0; i < len && i < 16; i++) {
			if (buf[i] == ' ')
				break;
			if (!tchar[(unsigned char)buf[i]]) {
				h->reason = "malformed request line";
				return EG_HTTP_BAD;
			}
		}
		return EG_HTTP_INCOMPLETE;
	}
	h->head_len = hl;
	const char *p = buf, *end = buf + hl;
	const char *ms = p;
	while (p < end && tchar[(unsigned char)*p])
		p++;
	if (p == ms || *p != ' ') {
		h->reason = "malformed request line";
		return EG_HTTP_BAD;
	}
	h->method = (struct eg_slice){ ms, (size_t)(p - ms) };
	p++;
	const char *ts = p;
	while (p < end && (unsigned char)*p > 0x20 && (unsigned char)*p < 0x7f)
		p++;
	if (p == ts || *p != ' ') {
		h->reason = "malformed request target";
		return EG_HTTP_BAD;
	}
	h->target = (struct eg_slice){ ts, (size_t)(p - ts) };
	p++;
	if (end - p < 10 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' || p[8] != '\r' || p[9] != '\n') {
		h->reason = "malformed HTTP version";
		return EG_HTTP_BAD;
	}
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1')) {
		h->reason = "unsupported HTTP version";
		return EG_HTTP_BAD_VERSION;
	}
	h->version_minor = p[7] - '0';
	p += 10;
	enum eg_http_err e = parse_headers(p, end, h);
	if (e != EG_HTTP_OK)
		return e;
	if (h->version_minor == 1 && h->host_idx < 0) {
		/* checked after derive() so that duplicate Host wins */
	}
	e = derive(h, 1);
	if (e != EG_HTTP_OK)
		return e;
	if (h->version_minor == 1 && h->host_idx < 0) {
		h->reason = "missing Host header";
		return EG_HTTP_BAD;
	}
	return EG_HTTP_OK;
}

enum eg_http_err eg_http_parse_response(const char *buf, size_t len, const char *req_method,
					size_t req_method_len, struct eg_http_head *h)
{
	size_t hl = find_head_end(buf, len);
	memset(h, 0, offsetof(struct eg_http_head, headers));
	h->host_idx = -1;
	if (len >= 5 && memcmp(buf, "HTTP/", 5) != 0) {
		h->reason = "malformed status line";
		return EG_HTTP_BAD;
	}
	if (!hl)
		return EG_HTTP_INCOMPLETE;
	h->head_len = hl;
	const char *p = buf, *end = buf + hl;
	if (end - p < 14 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ') {
		h->reason = "malformed status line";
		return EG_HTTP_BAD;
	}
	h->version_minor = p[7] - '0';
	p += 9;
	if (p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9' ||
	    (p[3] != ' ' && p[3] != '\r')) {
		h->reason = "malformed status code";
		return EG_HTTP_BAD;
	}
	h->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
	p += 3;
	while (p < end && *p != '\r') {
		unsigned char c = (unsigned char)*p;
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			h->reason = "control character in reason phrase";
			return EG_HTTP_BAD;
		}
		p++;
	}
	if (p + 1 >= end || p[1] != '\n') {
		h->reason = "bad line ending";
		return EG_HTTP_BAD;
	}
	p += 2;
	enum eg_http_err e = parse_headers(p, end, h);
	if (e != EG_HTTP_OK)
		return e;
	e = derive(h, 0);
	if (e != EG_HTTP_OK)
		return e;
	int is_head = req_method_len == 4 && memcmp(req_method, "HEAD", 4) == 0;
	if (is_head || h->status < 200 || h->status == 204 || h->status == 304) {
		h->body = EG_BODY_NONE;
	} else if (h->body == EG_BODY_NONE) {
		int has_cl = 0;
		for (int i = 0; i < h->nheaders; i++)
			if (eg_slice_ieq(h->headers[i].name, "content-length"))
				has_cl = 1;
		if (!has_cl)
			h->body = EG_BODY_UNTIL_CLOSE;
	}
	return EG_HTTP_OK;
}

int eg_http_normalize_host(const char *p, size_t n, char *out, size_t cap)
{
	if (n == 0 || n >= cap)
		return -1;
	if (p[0] == '[') {
		char tmp[64];
		struct in6_addr a6;
		if (n < 3 || p[n - 1] != ']' || n - 2 >= sizeof(tmp))
			return -1;
		memcpy(tmp, p + 1, n - 2);
		tmp[n - 2] = '\0';
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return -1;
		/* canonical text form, so rules and logs see one spelling */
		if (!inet_ntop(AF_INET6, &a6, out, (socklen_t)cap))
			return -1;
		return 6;
	}
	size_t o = 0;
	if (n > 0 && p[n - 1] == '.')
		n--; /* "example.com." is "example.com" */
	if (n == 0 || n > 253)
		return -1;
	int label = 0, all_numeric = 1;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label == 0 || out[o - 1] == '-')
				return -1; /* empty label, or one ending in '-' */
			label = 0;
		} else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_') {
			if ((label == 0 && c == '-') || ++label > 63)
				return -1; /* a label does not start with '-' (RFC 1123 §2.1) */
			if (!(c >= '0' && c <= '9'))
				all_numeric = 0;
		} else {
			return -1;
		}
		out[o++] = c;
	}
	if (label == 0 || out[o - 1] == '-')
		return -1;
	out[o] = '\0';
	if (all_numeric || strchr(out, '.') == NULL) {
		struct in_addr a4;
		if (inet_pton(AF_INET, out, &a4) == 1)
			return 4;
		if (all_numeric)
			return -1; /* "1.2.3" or "4294967295": ambiguous IPv4 spellings are refused */
	}
	return 0;
}

/* Split "host[:port]" (host may be [v6]); port 0 if absent. */
static int split_authority(const char *p, size_t n, struct eg_target *t, int port_required, const char **reason)
{
	size_t hostlen = n;
	const char *colon = NULL;
	if (n == 0) {
		*reason = "empty authority";
		return -1;
	}
	if (memchr(p, '@', n)) {
		*reason = "userinfo in authority";
		return -1;
	}
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', n);
		if (!rb) {
			*reason = "bad IPv6 literal";
			return -1;
		}
		hostlen = (size_t)(rb - p) + 1;
		if (hostlen < n) {
			if (p[hostlen] != ':') {
				*reason = "bad authority";
				return -1;
			}
			colon = p + hostlen;
		}
	} else {
		colon = memchr(p, ':', n);
		if (colon)
			hostlen = (size_t)(colon - p);
	}
	t->port = 0;
	if (colon) {
		size_t pl = n - (size_t)(colon + 1 - p);
		unsigned v = 0;
		if (pl == 0 || pl > 5) {
			*reason = "bad port";
			return -1;
		}
		for (size_t i = 0; i < pl; i++) {
			char c = colon[1 + i];
			if (c < '0' || c > '9') {
				*reason = "bad port";
				return -1;
			}
			v = v * 10 + (unsigned)(c - '0');
		}
		if (v == 0 || v > 65535) {
			*reason = "bad port";
			return -1;
		}
		t->port = (uint16_t)v;
	} else if (port_required) {
		*reason = "CONNECT target needs host:port";
		return -1;
	}
	int kind = eg_http_normalize_host(p, hostlen, t->host, sizeof(t->host));
	if (kind < 0 || (p[0] == '[' && kind != 6)) {
		*reason = "invalid host";
		return -1;
	}
	t->host_is_ip = kind;
	return 0;
}

int eg_http_parse_target(const char *p, size_t n, int is_connect, struct eg_target *t, const char **reason)
{
	memset(t, 0, sizeof(*t));
	if (is_connect) {
		t->form = EG_TARGET_AUTHORITY;
		return split_authority(p, n, t, 1, reason);
	}
	if (n == 1 && p[0] == '*') {
		t->form = EG_TARGET_ASTERISK;
		return 0;
	}
	if (n > 0 && p[0] == '/') {
		t->form = EG_TARGET_ORIGIN;
		t->path = (struct eg_slice){ p, n };
		return 0;
	}
	size_t skip;
	if (n >= 7 && strncasecmp(p, "http://", 7) == 0) {
		skip = 7;
	} else if (n >= 8 && strncasecmp(p, "https://", 8) == 0) {
		skip = 8;
		t->https = 1;
	} else {
		*reason = "unsupported request target";
		return -1;
	}
	t->form = EG_TARGET_ABSOLUTE;
	const char *a = p + skip, *end = p + n, *q = a;
	while (q < end && *q != '/' && *q != '?' && *q != '#')
		q++;
	if (q < end && *q == '#') {
		*reason = "fragment in request target";
		return -1;
	}
	if (split_authority(a, (size_t)(q - a), t, 0, reason) < 0)
		return -1;
	if (!t->port)
		t->port = t->https ? 443 : 80;
	if (q == end)
		t->path = (struct eg_slice){ "/", 1 };
	else
		t->path = (struct eg_slice){ q, (size_t)(end - q) };
	t->path_slash = *t->path.p == '?';
	return 0;
}

/* ---- chunked scanner ---- */

enum {
	CH_SIZE, CH_EXT, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF,
	CH_TRAILER_START, CH_TRAILER_LINE, CH_TRAILER_LF, CH_FINAL_LF, CH_DONE
};

#define CH_MAX_LINE 4096
#define CH_MAX_TRAILERS 8192

void eg_chunked_init(struct eg_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

enum eg_chunk_result eg_chunked_feed(struct eg_chunked *c, const char *p, size_t n, size_t *used)
{
	size_t i = 0;
	while (i < n) {
		char ch = p[i];
		switch (c->state) {
		case CH_SIZE: {
			int v = hexval(ch);
			if (v >= 0) {
				if (++c->digits > 15)
					goto error;
				c->remaining = c->remaining * 16 + (uint64_t)v;
			} else if (c->digits && (ch == ';' || ch == ' ' || ch == '\t')) {
				c->state = CH_EXT;
			} else if (c->digits && ch == '\r') {
				c->state = CH_SIZE_LF;
			} else {
				goto error;
			}
			i++;
			break;
		}
		case CH_EXT:
			if (ch == '\r')
				c->state = CH_SIZE_LF;
			else if (ch == '\n' || ++c->line_len > CH_MAX_LINE)
				goto error;
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				goto error;
			i++;
			c->line_len = 0;
			c->digits = 0;
			c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
			break;
		case CH_DATA: {
			size_t take = n - i;
			if (take > c->remaining)
				take = (size_t)c->remaining;
			i += take;
			c->remaining -= take;
			if (!c->remaining)
				c->state = CH_DATA_CR;
			break;
		}
		case CH_DATA_CR:
			if (ch != '\r')
				goto error;
			c->state = CH_DATA_LF;
			i++;
			break;
		case CH_DATA_LF:
			if (ch != '\n')
				goto error;
			c->state = CH_SIZE;
			i++;
			break;
		case CH_TRAILER_START:
			if (ch == '\r') {
				c->state = CH_FINAL_LF;
			} else if (ch == '\n') {
				goto error;
			} else {
				c->state = CH_TRAILER_LINE;
				if (++c->trailer_bytes > CH_MAX_TRAILERS)
					goto error;
			}
			i++;
			break;
		case CH_TRAILER_LINE:
			if (ch == '\r')
				c->state = CH_TRAILER_LF;
			else if (ch == '\n' || ++c->trailer_bytes > CH_MAX_TRAILERS)
				goto error;
			i++;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n')
				goto error;
			c->state = CH_TRAILER_START;
			i++;
			break;
		case CH_FINAL_LF:
			if (ch != '\n')
				goto error;
			i++;
			c->state = CH_DONE;
			*used = i;
			return EG_CHUNK_DONE;
		default:
			goto error;
		}
	}
	*used = i;
	return EG_CHUNK_MORE;
error:
	*used = i;
	return EG_CHUNK_ERROR;
}
