/* Unit tests of core/csr.c: PKCS#10 parsing, proof of possession, key and name extraction,
 * the accepted encodings (DER, base64 with and without line breaks, PEM) and hostile input.
 * Vectors: tests/vectors/csr/ (made with openssl req; see tests/vectors/README.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "csr.h"

static char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/tests/vectors/csr/%s", EG_TEST_SOURCE_DIR, name);
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	char *buf = malloc(1 << 20);
	assert_non_null(buf);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	buf[*len] = '\0';
	return buf;
}

/* The base64 between the PEM armour lines, line breaks kept (what most EST clients send). */
static char *pem_body(const char *pem, size_t *len)
{
	const char *b = strchr(pem, '\n') + 1;
	const char *e = strstr(b, "-----END");
	*len = (size_t)(e - b);
	char *out = malloc(*len + 1);
	memcpy(out, b, *len);
	out[*len] = '\0';
	return out;
}

static struct eg_csr *parse_ok(const char *data, size_t len)
{
	struct eg_csr *c = NULL;
	char why[200] = "";
	enum eg_csr_status st = eg_csr_parse(data, len, &c, why, sizeof(why));
	if (st != EG_CSR_OK)
		fail_msg("parse failed (%d): %s", st, why);
	assert_non_null(c);
	return c;
}

static struct eg_csr *parse_vector(const char *name)
{
	size_t len, bl;
	char *pem = slurp(name, &len);
	char *body = pem_body(pem, &bl);
	struct eg_csr *c = parse_ok(body, bl);
	free(body);
	free(pem);
	return c;
}

static const char *san_of(const struct eg_csr *c, const char *type, int nth)
{
	for (int i = 0; i < c->nsan; i++)
		if (strcmp(c->san[i].type, type) == 0 && nth-- == 0)
			return c->san[i].value;
	return NULL;
}

static void test_key_types(void **state)
{
	(void)state;
	static const struct { const char *file, *type; int bits; const char *curve; } v[] = {
		{ "rsa2048.pem", "RSA", 2048, "" },
		{ "rsa1024.pem", "RSA", 1024, "" },
		{ "p256.pem", "EC", 256, "prime256v1" },
		{ "p192.pem", "EC", 192, "prime192v1" },
		{ "bp384.pem", "EC", 384, "brainpoolP384r1" },
		{ "k256.pem", "EC", 256, "secp256k1" },
		{ "ed25519.pem", "ED25519", 256, "" },
		{ "dsa2048.pem", "DSA", 2048, "" },
		{ "explicit-p256.pem", "EC", 256, "" }, /* explicit parameters: no curve name */
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct eg_csr *c = parse_vector(v[i].file);
		if (strcmp(c->key_type, v[i].type) != 0 || c->key_bits != v[i].bits || strcmp(c->curve, v[i].curve) != 0)
			fail_msg("%s: got %s/%d/%s", v[i].file, c->key_type, c->key_bits, c->curve);
		eg_csr_free(c);
	}
}

static void test_names_and_extensions(void **state)
{
	(void)state;
	struct eg_csr *c = parse_vector("full-p384.pem");
	assert_string_equal(c->key_type, "EC");
	assert_string_equal(c->curve, "secp384r1");
	assert_string_equal(c->signature_alg, "ecdsa-with-SHA256");
	assert_int_equal(c->nsubject, 3);
	assert_string_equal(c->subject[0].type, "C");
	assert_string_equal(c->subject[0].value, "DE");
	assert_string_equal(c->subject[1].type, "O");
	assert_string_equal(c->subject[1].value, "Example Org");
	assert_string_equal(c->subject[2].type, "CN");
	assert_string_equal(c->subject[2].value, "dev1.vpn.example.com");
	assert_string_equal(c->subject_text, "CN=dev1.vpn.example.com,O=Example Org,C=DE");
	assert_int_equal(c->nsan, 6);
	assert_string_equal(san_of(c, "dns", 0), "dev1.vpn.example.com");
	assert_string_equal(san_of(c, "dns", 1), "alt.vpn.example.com");
	assert_string_equal(san_of(c, "ip", 0), "10.1.2.3");
	assert_string_equal(san_of(c, "ip", 1), "2001:db8::7");
	assert_string_equal(san_of(c, "email", 0), "ops@example.com");
	assert_string_equal(san_of(c, "uri", 0), "urn:dev:1");
	assert_int_equal(c->nextensions, 2);
	assert_string_equal(c->extensions[0], "subjectAltName");
	assert_string_equal(c->extensions[1], "keyUsage");
	assert_true(c->has_challenge_password);
	eg_csr_free(c);

	c = parse_vector("p256.pem");
	assert_false(c->has_challenge_password);
	assert_int_equal(c->nsan, 1);
	eg_csr_free(c);
}

static void test_encodings(void **state)
{
	(void)state;
	size_t len, bl, dl;
	char *pem = slurp("rsa2048.pem", &len);
	char *der = slurp("rsa2048.der", &dl);
	char *body = pem_body(pem, &bl);

	struct eg_csr *a = parse_ok(der, dl);              /* DER */
	struct eg_csr *b = parse_ok(body, bl);             /* base64 with line breaks */
	struct eg_csr *p = parse_ok(pem, len);             /* PEM armour */
	char *flat = malloc(bl + 1);                        /* base64 on one line (RFC 8951) */
	size_t fl = 0;
	for (size_t i = 0; i < bl; i++)
		if (body[i] != '\n' && body[i] != '\r')
			flat[fl++] = body[i];
	struct eg_csr *f = parse_ok(flat, fl);
	char *crlf = malloc(bl * 2 + 4);                    /* CRLF line ends, leading and trailing space */
	size_t cl = 0;
	crlf[cl++] = ' ';
	for (size_t i = 0; i < bl; i++) {
		if (body[i] == '\n')
			crlf[cl++] = '\r';
		crlf[cl++] = body[i];
	}
	crlf[cl++] = '\r';
	crlf[cl++] = '\n';
	struct eg_csr *r = parse_ok(crlf, cl);
	struct eg_csr *all[] = { b, p, f, r };
	for (int i = 0; i < 4; i++) {
		assert_int_equal(all[i]->der_len, a->der_len);
		assert_memory_equal(all[i]->der, a->der, a->der_len);
		assert_string_equal(all[i]->subject_text, a->subject_text);
		eg_csr_free(all[i]);
	}
	eg_csr_free(a);
	free(flat);
	free(crlf);
	free(body);
	free(der);
	free(pem);
}

static enum eg_csr_status parse_status(const void *data, size_t len)
{
	struct eg_csr *c = (struct eg_csr *)1;
	char why[200] = "";
	enum eg_csr_status st = eg_csr_parse(data, len, &c, why, sizeof(why));
	if (st != EG_CSR_OK) {
		assert_null(c);
		assert_true(why[0] != '\0'); /* every refusal says why */
	}
	eg_csr_free(c);
	return st;
}

static void test_refusals(void **state)
{
	(void)state;
	size_t len, dl;
	assert_int_equal(parse_status("", 0), EG_CSR_EMPTY);
	assert_int_equal(parse_status(" \r\n", 3), EG_CSR_EMPTY);
	assert_int_equal(parse_status("not base64 !!!", 14), EG_CSR_BAD_ENCODING);
	assert_int_equal(parse_status("QUJD", 4), EG_CSR_BAD_DER);              /* "ABC" */
	assert_int_equal(parse_status("QUJ", 3), EG_CSR_BAD_ENCODING);          /* not whole quantums */
	assert_int_equal(parse_status("QQ==QUJD", 8), EG_CSR_BAD_ENCODING);     /* data after padding */
	assert_int_equal(parse_status("-----BEGIN X-----\nQUJD\n", 23), EG_CSR_BAD_ENCODING);

	char *bad = slurp("badsig-p256.der", &dl);
	assert_int_equal(parse_status(bad, dl), EG_CSR_BAD_SIGNATURE);
	free(bad);

	char *der = slurp("rsa2048.der", &dl);
	char *longer = malloc(dl + 1);
	memcpy(longer, der, dl);
	longer[dl] = 0;
	assert_int_equal(parse_status(longer, dl + 1), EG_CSR_BAD_DER);         /* trailing byte */
	for (size_t cut = 1; cut < dl; cut += 7)                              /* every truncation refused */
		assert_int_not_equal(parse_status(der, dl - cut), EG_CSR_OK);
	free(longer);
	free(der);

	char *huge = malloc(EG_CSR_MAX_DER * 3);
	memset(huge, 'A', EG_CSR_MAX_DER * 3);
	assert_int_equal(parse_status(huge, EG_CSR_MAX_DER * 3), EG_CSR_TOO_LARGE);
	huge[0] = 0x30;
	huge[1] = (char)0x84;
	assert_int_equal(parse_status(huge, EG_CSR_MAX_DER + 1), EG_CSR_TOO_LARGE);
	free(huge);
	(void)len;
}

static void test_ambiguous_requests(void **state)
{
	(void)state;
	size_t len;
	char *pem = slurp("msextreq-p256.pem", &len);   /* Microsoft's extension request attribute */
	struct eg_csr *c = NULL;
	char why[200] = "";
	assert_int_equal(eg_csr_parse(pem, len, &c, why, sizeof(why)), EG_CSR_BAD_DER);
	assert_non_null(strstr(why, "Microsoft"));
	free(pem);
	pem = slurp("twocn-p256.pem", &len);             /* two CNs */
	assert_int_not_equal(eg_csr_parse(pem, len, &c, why, sizeof(why)), EG_CSR_OK);
	assert_non_null(strstr(why, "more than one CN"));
	free(pem);
	c = parse_vector("ca-p256.pem");                 /* basicConstraints cA TRUE: parsed, flagged */
	assert_true(c->requests_ca);
	eg_csr_free(c);
	c = parse_vector("full-p384.pem");
	assert_false(c->requests_ca);
	eg_csr_free(c);
}

static void test_base64_decoder(void **state)
{
	(void)state;
	unsigned char out[16];
	assert_int_equal(eg_base64_decode_ws("TWFu", 4, out, sizeof(out)), 3);
	assert_memory_equal(out, "Man", 3);
	assert_int_equal(eg_base64_decode_ws("TW\r\nE=", 6, out, sizeof(out)), 2);
	assert_memory_equal(out, "Ma", 2);
	assert_int_equal(eg_base64_decode_ws("TQ==", 4, out, sizeof(out)), 1);
	assert_int_equal(eg_base64_decode_ws("TR==", 4, out, sizeof(out)), -1); /* non-zero spare bits */
	assert_int_equal(eg_base64_decode_ws("TQ=", 3, out, sizeof(out)), -1);
	assert_int_equal(eg_base64_decode_ws("T===", 4, out, sizeof(out)), -1);
	assert_int_equal(eg_base64_decode_ws("TWFuTWFu", 8, out, 5), -1);       /* does not fit */
	assert_int_equal(eg_base64_decode_ws("TW-u", 4, out, sizeof(out)), -1); /* base64url is not base64 */
}

/* eg_csr_key_from_spki (CMP templates) gives the same key as OpenSSL's decoders for every key
 * of the CSR vectors: the ones it builds itself (RSA, P-256, P-384, secp256k1, brainpoolP384r1,
 * Ed25519) and the ones it hands to them (P-192, explicit parameters, DSA). */
static void test_key_from_spki(void **state)
{
	(void)state;
	const char *files[] = { "rsa1024.pem", "rsa2048.pem", "p192.pem", "p256.pem", "full-p384.pem", "k256.pem",
				"bp384.pem", "ed25519.pem", "dsa2048.pem", "explicit-p256.pem" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char path[1024];
		snprintf(path, sizeof(path), "%s/tests/vectors/csr/%s", EG_TEST_SOURCE_DIR, files[i]);
		FILE *f = fopen(path, "r");
		assert_non_null(f);
		X509_REQ *req = PEM_read_X509_REQ(f, NULL, NULL, NULL);
		fclose(f);
		assert_non_null(req);
		EVP_PKEY *want = X509_REQ_get0_pubkey(req);
		assert_non_null(want);
		X509_PUBKEY *xpk = X509_REQ_get_X509_PUBKEY(req);
		const unsigned char *bytes;
		int n;
		X509_ALGOR *alg;
		assert_int_equal(X509_PUBKEY_get0_param(NULL, &bytes, &n, &alg, xpk), 1);
		ASN1_BIT_STRING *bits = ASN1_BIT_STRING_new();
		assert_int_equal(ASN1_BIT_STRING_set(bits, (unsigned char *)bytes, n), 1);
		EVP_PKEY *got = eg_csr_key_from_spki(alg, bits);
		if (!got)
			fail_msg("%s: no key", files[i]);
		assert_int_equal(EVP_PKEY_eq(got, want), 1);
		EVP_PKEY_free(got);
		/* a key with a byte missing is no key (or not the same one) */
		assert_int_equal(ASN1_BIT_STRING_set(bits, (unsigned char *)bytes, n - 1), 1);
		got = eg_csr_key_from_spki(alg, bits);
		assert_true(!got || EVP_PKEY_eq(got, want) != 1);
		EVP_PKEY_free(got);
		ASN1_BIT_STRING_free(bits);
		X509_REQ_free(req);
	}
	assert_null(eg_csr_key_from_spki(NULL, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_types),
		cmocka_unit_test(test_names_and_extensions),
		cmocka_unit_test(test_encodings),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_ambiguous_requests),
		cmocka_unit_test(test_base64_decoder),
		cmocka_unit_test(test_key_from_spki),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
