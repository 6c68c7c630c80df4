/* http_parse.h: strict HTTP/1.x message-head parser and chunked-body scanner.
 *
 * Written for the proxy's needs instead of taken from a library: see docs/design.md
 * ("HTTP parsing"). Everything is bounds-checked, nothing is allocated: results are
 * slices into the caller's buffer, which must stay alive while they are used.
 * Anything ambiguous (bare LF, obs-fold, CL+TE, duplicate CL, spaces before ':')
 * is rejected rather than guessed, because a proxy that guesses differently from
 * the origin is a request-smuggling vector. Fuzzed by fuzz/fuzz_http_head.c. */
#ifndef EG_HTTP_PARSE_H
#define EG_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>

#define EG_HTTP_MAX_HEADERS 100

struct eg_slice {
	const char *p;
	size_t n;
};

struct eg_header {
	struct eg_slice name;
	struct eg_slice value;
	unsigned hop_by_hop : 1; /* a proxy must not forward it (RFC 9110 §7.6.1) */
};

enum eg_http_err {
	EG_HTTP_OK = 0,
	EG_HTTP_INCOMPLETE,        /* need more bytes */
	EG_HTTP_BAD,               /* 400 */
	EG_HTTP_TOO_LARGE,         /* 431: too many headers */
	EG_HTTP_BAD_VERSION,       /* 505 */
	EG_HTTP_H2_PREFACE,        /* "PRI * HTTP/2.0": prior-knowledge HTTP/2 */
	EG_HTTP_UNSUPPORTED_TE,    /* 501: transfer-coding other than chunked */
};

/* What a head says about its body. */
enum eg_body_kind { EG_BODY_NONE, EG_BODY_LENGTH, EG_BODY_CHUNKED, EG_BODY_UNTIL_CLOSE };

struct eg_http_head {
	/* request line, or status line for responses */
	struct eg_slice method;
	struct eg_slice target;
	int status;             /* responses only */
	int version_minor;      /* HTTP/1.<minor>: 0 or 1 */
	size_t head_len;        /* bytes of the head including the final CRLF CRLF */

	struct eg_header headers[EG_HTTP_MAX_HEADERS];
	int nheaders;

	/* derived */
	enum eg_body_kind body;
	uint64_t content_length;
	unsigned conn_close : 1;      /* Connection: close (or HTTP/1.0 without keep-alive) */
	unsigned conn_keepalive : 1;  /* Connection: keep-alive */
	unsigned has_upgrade : 1;     /* an Upgrade header is present */
	unsigned expect_continue : 1; /* Expect: 100-continue */
	int host_idx;                 /* index of the Host header or -1 */
	const char *reason;           /* short static reason for an error result */
};

/* Parse a request head from buf[0..len). Returns EG_HTTP_INCOMPLETE until the blank line
 * arrives; on EG_HTTP_OK, h->head_len tells how many bytes the head used. */
enum eg_http_err eg_http_parse_request(const char *buf, size_t len, struct eg_http_head *h);

/* Parse a response head. req_method is the method it answers (HEAD changes framing). */
enum eg_http_err eg_http_parse_response(const char *buf, size_t len, const char *req_method,
					size_t req_method_len, struct eg_http_head *h);

/* Where a request should go, from its request-target. */
enum eg_target_form { EG_TARGET_ORIGIN, EG_TARGET_ABSOLUTE, EG_TARGET_AUTHORITY, EG_TARGET_ASTERISK };

struct eg_target {
	enum eg_target_form form;
	char host[256];   /* lower-case name, dotted IPv4 or IPv6 without brackets */
	int host_is_ip;   /* 4 or 6 for literals, 0 for names */
	uint16_t port;
	struct eg_slice path;  /* path + query for origin/absolute form ("/" if empty) */
	int path_slash;        /* 1: path is only "?query" (absolute URI without a path), and the
				* origin-form is "/" followed by it (RFC 9112 §3.2.1) */
	int https;             /* absolute-form with the https scheme */
};

/* Split and validate a request-target. Returns 0 or -1 with *reason set. is_connect selects
 * authority-form, which is the only form CONNECT accepts and the only place it is accepted. */
int eg_http_parse_target(const char *p, size_t n, int is_connect, struct eg_target *t, const char **reason);

/* Validate a host (reg-name or IP literal, optionally bracketed) and normalise it into out.
 * Returns 0, 4 or 6 (0 = name) or -1 if invalid. */
int eg_http_normalize_host(const char *p, size_t n, char *out, size_t cap);

/* Case-insensitive comparisons against a NUL-terminated literal. */
int eg_slice_ieq(struct eg_slice s, const char *lit);

/* Scanner for a chunked body passing through verbatim: it only finds where it ends. */
struct eg_chunked {
	int state;
	uint64_t remaining;  /* bytes left in the current chunk's data */
	unsigned line_len;   /* bytes in the current size or trailer line */
	unsigned trailer_bytes;
	unsigned digits;
};

enum eg_chunk_result { EG_CHUNK_MORE, EG_CHUNK_DONE, EG_CHUNK_ERROR };

void eg_chunked_init(struct eg_chunked *c);
/* Feed n bytes; *used says how many belong to the body (all of them unless DONE). */
enum eg_chunk_result eg_chunked_feed(struct eg_chunked *c, const char *p, size_t n, size_t *used);

#endif
