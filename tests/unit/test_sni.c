/* test_sni.c: unit tests of the ClientHello server_name reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sni.h"

/* A ClientHello captured from `openssl s_client -servername x.example` (OpenSSL 3.0, TLS 1.3
 * with key shares, 315 bytes in one record). */
static const unsigned char OPENSSL_HELLO[] = {
  0x16, 0x03, 0x01, 0x01, 0x36, 0x01, 0x00, 0x01, 0x32, 0x03, 0x03, 0x94,
  0xf3, 0x6b, 0x33, 0xb1, 0xb6, 0x74, 0x6d, 0x4e, 0xaa, 0x4e, 0x49, 0x3f,
  0xd6, 0xb5, 0x1c, 0xd6, 0x56, 0x3d, 0x0c, 0x90, 0x5e, 0xcf, 0x71, 0xcd,
  0x58, 0xaa, 0xc6, 0xcc, 0x7a, 0xf9, 0x4c, 0x20, 0x4e, 0xb8, 0xa2, 0x61,
  0x7a, 0x8d, 0x33, 0xde, 0xa9, 0xc7, 0x22, 0xd4, 0x25, 0xb9, 0x63, 0xf7,
  0x43, 0xf1, 0xe6, 0x42, 0xe0, 0x19, 0x3f, 0x45, 0xde, 0xa3, 0x5c, 0xd3,
  0x1d, 0x12, 0x67, 0x72, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01,
  0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa,
  0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
  0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39,
  0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d,
  0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xab,
  0x00, 0x00, 0x00, 0x0e, 0x00, 0x0c, 0x00, 0x00, 0x09, 0x78, 0x2e, 0x65,
  0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00,
  0x01, 0x02, 0x00, 0x0a, 0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17,
  0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01, 0x01, 0x02,
  0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00,
  0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03,
  0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a,
  0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01,
  0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02,
  0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03,
  0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00,
  0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x13, 0xe4, 0x71, 0x4f, 0x80,
  0x27, 0x7e, 0x3f, 0xa5, 0x5e, 0x6b, 0xd8, 0xf9, 0x06, 0x5c, 0x8f, 0xe7,
  0xdd, 0x3f, 0x64, 0x3e, 0xc5, 0x99, 0x40, 0x09, 0xc7, 0x45, 0xc9, 0x1f,
  0xda, 0x57, 0x5e
};

/* ---- a hand-made ClientHello ---- */

struct buf {
	unsigned char b[70000];
	size_t n;
};

static void put8(struct buf *o, unsigned v) { o->b[o->n++] = (unsigned char)v; }
static void put16(struct buf *o, unsigned v) { put8(o, v >> 8); put8(o, v & 0xff); }
static void put24(struct buf *o, unsigned v) { put8(o, v >> 16); put16(o, v & 0xffff); }
static void putn(struct buf *o, const void *p, size_t n) { memcpy(o->b + o->n, p, n); o->n += n; }
static void patch16(struct buf *o, size_t at, size_t v) { o->b[at] = (unsigned char)(v >> 8); o->b[at + 1] = (unsigned char)v; }
static void patch24(struct buf *o, size_t at, size_t v)
{
	o->b[at] = (unsigned char)(v >> 16);
	patch16(o, at + 1, v & 0xffff);
}

/* server_name extension carrying one host_name entry. */
static void ext_sni(struct buf *o, const char *name)
{
	size_t n = strlen(name);
	put16(o, 0x0000);
	put16(o, (unsigned)(n + 5));
	put16(o, (unsigned)(n + 3));
	put8(o, 0);
	put16(o, (unsigned)n);
	putn(o, name, n);
}

static void ext_other(struct buf *o, unsigned type, size_t len)
{
	put16(o, type);
	put16(o, (unsigned)len);
	for (size_t i = 0; i < len; i++)
		put8(o, (unsigned)i);
}

enum { NO_EXTENSIONS = 1 };

/* Record + handshake header + ClientHello body; exts() writes the extensions (may be NULL for an
 * empty extension block). Returns the offset of the extension block length. */
static size_t hello(struct buf *o, void (*exts)(struct buf *, const void *), const void *arg, int flags)
{
	o->n = 0;
	put8(o, 0x16);
	put16(o, 0x0301);
	size_t rec_len_at = o->n;
	put16(o, 0);
	put8(o, 0x01);
	size_t hs_len_at = o->n;
	put24(o, 0);
	put16(o, 0x0303);
	for (int i = 0; i < 32; i++)
		put8(o, (unsigned)(0x40 + i)); /* random */
	put8(o, 32);
	for (int i = 0; i < 32; i++)
		put8(o, (unsigned)i); /* session id */
	put16(o, 4);
	put16(o, 0x1301);
	put16(o, 0x1302);
	put8(o, 1);
	put8(o, 0); /* null compression */
	size_t ext_len_at = o->n;
	if (!(flags & NO_EXTENSIONS)) {
		put16(o, 0);
		if (exts)
			exts(o, arg);
		patch16(o, ext_len_at, o->n - ext_len_at - 2);
	}
	patch24(o, hs_len_at, o->n - hs_len_at - 3);
	patch16(o, rec_len_at, o->n - rec_len_at - 2);
	return ext_len_at;
}

static void exts_sni_only(struct buf *o, const void *arg) { ext_sni(o, arg); }

static void exts_sni_among_others(struct buf *o, const void *arg)
{
	ext_other(o, 0x000b, 2);  /* ec_point_formats */
	ext_other(o, 0x000a, 6);  /* supported_groups */
	ext_other(o, 0xfe0d, 0);  /* an empty one */
	ext_sni(o, arg);
	ext_other(o, 0x002b, 3);  /* supported_versions */
}

static void exts_no_sni(struct buf *o, const void *arg)
{
	(void)arg;
	ext_other(o, 0x000a, 6);
	ext_other(o, 0x002b, 3);
}

static struct buf B;

static enum eg_sni_result parse(const struct buf *o, char *out, size_t cap)
{
	memset(out, 'Z', cap);
	return eg_sni_parse(o->b, o->n, out, cap);
}

/* ---- tests ---- */

static void test_found_openssl(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(eg_sni_parse(OPENSSL_HELLO, sizeof(OPENSSL_HELLO), out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "x.example");
}

static void test_found_handmade(void **state)
{
	(void)state;
	char out[256];
	hello(&B, exts_sni_only, "www.Example.COM", 0);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "www.example.com"); /* lower-cased */
	hello(&B, exts_sni_among_others, "acme-v02.api.letsencrypt.org", 0);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "acme-v02.api.letsencrypt.org");
	hello(&B, exts_sni_only, "example.com.", 0);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "example.com");
}

static void test_found_with_trailing_data(void **state)
{
	(void)state;
	char out[256];
	hello(&B, exts_sni_only, "a.example", 0);
	/* the next record (or anything) after the first one does not matter */
	putn(&B, "\x14\x03\x03\x00\x01\x01garbage", 13);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "a.example");
}

static void test_absent(void **state)
{
	(void)state;
	char out[256];
	hello(&B, NULL, NULL, NO_EXTENSIONS);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_ABSENT);
	hello(&B, NULL, NULL, 0); /* empty extension block */
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_ABSENT);
	hello(&B, exts_no_sni, NULL, 0);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_ABSENT);
}

static void test_not_tls(void **state)
{
	(void)state;
	char out[256];
	static const char *const plain[] = { "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET /", "G", "CONNECT a:443 HTTP/1.1\r\n",
					     "SSH-2.0-OpenSSH_9.6\r\n", NULL };
	for (int i = 0; plain[i]; i++)
		assert_int_equal(eg_sni_parse((const unsigned char *)plain[i], strlen(plain[i]), out, sizeof(out)),
				 EG_SNI_NOT_TLS);
	/* a handshake record with the wrong major version, an alert, SSLv2 */
	static const unsigned char v[] = { 0x16, 0x02, 0x00, 0x00, 0x10 };
	assert_int_equal(eg_sni_parse(v, sizeof(v), out, sizeof(out)), EG_SNI_NOT_TLS);
	static const unsigned char alert[] = { 0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28 };
	assert_int_equal(eg_sni_parse(alert, sizeof(alert), out, sizeof(out)), EG_SNI_NOT_TLS);
	static const unsigned char sslv2[] = { 0x80, 0x2e, 0x01, 0x00, 0x02 };
	assert_int_equal(eg_sni_parse(sslv2, sizeof(sslv2), out, sizeof(out)), EG_SNI_NOT_TLS);
	/* record length 0, or beyond the TLS limit */
	static const unsigned char empty[] = { 0x16, 0x03, 0x01, 0x00, 0x00 };
	assert_int_equal(eg_sni_parse(empty, sizeof(empty), out, sizeof(out)), EG_SNI_NOT_TLS);
	static const unsigned char huge[] = { 0x16, 0x03, 0x01, 0xff, 0xff };
	assert_int_equal(eg_sni_parse(huge, sizeof(huge), out, sizeof(out)), EG_SNI_NOT_TLS);
	/* a handshake that is not a ClientHello (ServerHello) */
	hello(&B, exts_sni_only, "a.example", 0);
	B.b[5] = 0x02;
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
}

static void test_not_tls_bad_names(void **state)
{
	(void)state;
	char out[256];
	static const char *const bad[] = { "192.0.2.1", "[::1]", "a b.example", "a..example", "", "exa\x01mple",
					   "1.2.3", "*.example.com", NULL };
	for (int i = 0; bad[i]; i++) {
		hello(&B, exts_sni_only, bad[i], 0);
		if (parse(&B, out, sizeof(out)) != EG_SNI_NOT_TLS)
			fail_msg("server_name '%s' accepted", bad[i]);
	}
	/* a name that does not fit the caller's buffer is refused, never truncated */
	hello(&B, exts_sni_only, "long-name.example", 0);
	char small[8];
	assert_int_equal(parse(&B, small, sizeof(small)), EG_SNI_NOT_TLS);
}

static void test_more(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(eg_sni_parse((const unsigned char *)"", 0, out, sizeof(out)), EG_SNI_MORE);
	/* every strict prefix of a complete first record needs more */
	for (size_t n = 1; n < sizeof(OPENSSL_HELLO); n++) {
		enum eg_sni_result r = eg_sni_parse(OPENSSL_HELLO, n, out, sizeof(out));
		if (r != EG_SNI_MORE)
			fail_msg("prefix of %zu bytes: %d", n, (int)r);
	}
	hello(&B, exts_sni_among_others, "b.example", 0);
	for (size_t n = 1; n < B.n; n++)
		assert_int_equal(eg_sni_parse(B.b, n, out, sizeof(out)), EG_SNI_MORE);
}

static void test_hello_spanning_records(void **state)
{
	(void)state;
	char out[256];
	/* The handshake message says it is longer than the record (it continues in the next
	 * record): what is in the first record still counts. */
	size_t ext_at = hello(&B, exts_sni_among_others, "span.example", 0);
	(void)ext_at;
	size_t hs_len = ((size_t)B.b[6] << 16) | ((size_t)B.b[7] << 8) | B.b[8];
	patch24(&B, 6, hs_len + 1000);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "span.example");
	/* ... and if the extensions are cut before server_name, there is no name */
	hello(&B, exts_sni_among_others, "span.example", 0);
	size_t rec_len = ((size_t)B.b[3] << 8) | B.b[4];
	size_t cut = 20; /* drop the last 20 bytes of the record: inside server_name */
	patch16(&B, 3, rec_len - cut);
	B.n -= cut;
	patch24(&B, 6, hs_len + 1000);
	enum eg_sni_result r = parse(&B, out, sizeof(out));
	assert_true(r == EG_SNI_ABSENT || r == EG_SNI_NOT_TLS);
}

static void test_malformed_lengths(void **state)
{
	(void)state;
	char out[256];
	size_t ext_at;
	/* session id length beyond the message */
	hello(&B, exts_sni_only, "a.example", 0);
	B.b[43] = 0xff; /* 5 record + 4 handshake + 2 version + 32 random */
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
	/* cipher suites length beyond the message */
	hello(&B, exts_sni_only, "a.example", 0);
	patch16(&B, 76, 0xfffe);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
	/* handshake shorter than its fixed fields */
	static const unsigned char tiny[] = { 0x16, 0x03, 0x01, 0x00, 0x06, 0x01, 0x00, 0x00, 0x02, 0x03, 0x03 };
	assert_int_equal(eg_sni_parse(tiny, sizeof(tiny), out, sizeof(out)), EG_SNI_NOT_TLS);
	static const unsigned char one[] = { 0x16, 0x03, 0x01, 0x00, 0x01, 0x01 };
	assert_int_equal(eg_sni_parse(one, sizeof(one), out, sizeof(out)), EG_SNI_NOT_TLS);
	/* extension block length beyond the message: what is there is still scanned */
	ext_at = hello(&B, exts_sni_only, "a.example", 0);
	patch16(&B, ext_at, 0x7fff);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	/* one extension's length beyond the block */
	ext_at = hello(&B, exts_sni_only, "a.example", 0);
	patch16(&B, ext_at + 4, 0x0100);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_ABSENT);
	/* server_name list length beyond the extension */
	ext_at = hello(&B, exts_sni_only, "a.example", 0);
	patch16(&B, ext_at + 6, 0x0100);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
	/* host_name length beyond the list */
	ext_at = hello(&B, exts_sni_only, "a.example", 0);
	patch16(&B, ext_at + 9, 0x0100);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
	/* host_name length shorter than the name: the name is cut, then the list has junk */
	ext_at = hello(&B, exts_sni_only, "a.example", 0);
	patch16(&B, ext_at + 9, 1);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_FOUND);
	assert_string_equal(out, "a");
	/* a server_name extension with an empty list */
	ext_at = hello(&B, NULL, NULL, 0);
	assert_int_equal(ext_at, 84); /* 5 record + 4 handshake + 2 + 32 + 1 + 32 + 2 + 4 + 1 + 1 */
	put16(&B, 0x0000);
	put16(&B, 2);
	put16(&B, 0);
	patch16(&B, ext_at, 6);
	patch24(&B, 6, B.n - 9);
	patch16(&B, 3, B.n - 5);
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
	/* a name type other than host_name only */
	ext_at = hello(&B, exts_sni_only, "a.example", 0);
	B.b[ext_at + 8] = 1;
	assert_int_equal(parse(&B, out, sizeof(out)), EG_SNI_NOT_TLS);
}

static void test_mutations_do_not_crash(void **state)
{
	(void)state;
	char out[256];
	static unsigned char m[sizeof(OPENSSL_HELLO)];
	/* every byte of the captured hello set to a few interesting values, every length */
	static const unsigned char vals[] = { 0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff };
	for (size_t i = 0; i < sizeof(OPENSSL_HELLO); i++) {
		for (size_t v = 0; v < sizeof(vals); v++) {
			memcpy(m, OPENSSL_HELLO, sizeof(m));
			m[i] = vals[v];
			enum eg_sni_result r = eg_sni_parse(m, sizeof(m), out, sizeof(out));
			if (r == EG_SNI_FOUND) {
				size_t l = strnlen(out, sizeof(out));
				assert_true(l > 0 && l < sizeof(out));
			}
		}
	}
	/* pseudo-random records */
	uint32_t x = 12345;
	for (int k = 0; k < 20000; k++) {
		size_t n = 5 + (k % 300);
		m[0] = 0x16;
		m[1] = 0x03;
		m[2] = 0x01;
		m[3] = (unsigned char)((n - 5) >> 8);
		m[4] = (unsigned char)(n - 5);
		for (size_t i = 5; i < n; i++) {
			x = x * 1103515245u + 12345u;
			m[i] = (unsigned char)(x >> 16);
		}
		(void)eg_sni_parse(m, n, out, sizeof(out));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_found_openssl),
		cmocka_unit_test(test_found_handmade),
		cmocka_unit_test(test_found_with_trailing_data),
		cmocka_unit_test(test_absent),
		cmocka_unit_test(test_not_tls),
		cmocka_unit_test(test_not_tls_bad_names),
		cmocka_unit_test(test_more),
		cmocka_unit_test(test_hello_spanning_records),
		cmocka_unit_test(test_malformed_lengths),
		cmocka_unit_test(test_mutations_do_not_crash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
