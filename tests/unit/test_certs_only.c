/* Unit tests for core/certs_only.c: EST's certs-only PKCS#7 read without key decoding. The seeds
 * of fuzz/corpus/p7 (made with `openssl crl2pkcs7` from tests/vectors/cmp/pki) are the vectors;
 * what it says of the first certificate must be what OpenSSL's full X509 decoding says. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "certs_only.h"
#include "tls.h"

static unsigned char *slurp(const char *rel, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", EG_TEST_SOURCE_DIR, rel);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	unsigned char *buf = malloc(1 << 16);
	assert_non_null(buf);
	*len = fread(buf, 1, 1 << 16, f);
	fclose(f);
	return buf;
}

/* what the full decoding says of the PEM certificate at rel */
static void expect_like(const struct eg_certs_only *d, const char *rel)
{
	char path[1024], subj[256], serial[80], na[64] = "";
	snprintf(path, sizeof(path), "%s/%s", EG_TEST_SOURCE_DIR, rel);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	eg_tls_describe_cert(x, subj, sizeof(subj), serial, sizeof(serial));
	BIO *b = BIO_new(BIO_s_mem());
	ASN1_TIME_print(b, X509_get0_notAfter(x));
	int n = BIO_read(b, na, (int)sizeof(na) - 1);
	na[n > 0 ? n : 0] = '\0';
	BIO_free(b);
	X509_free(x);
	assert_string_equal(d->subject, subj);
	assert_string_equal(d->serial, serial);
	assert_string_equal(d->not_after, na);
}

static void test_vectors(void **state)
{
	(void)state;
	static const struct { const char *file; int ncerts; } v[] = {
		{ "fuzz/corpus/p7/one-cert.der", 1 },
		{ "fuzz/corpus/p7/two-certs.der", 2 },
		{ "fuzz/corpus/p7/cert-and-crl.der", 1 },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		size_t len;
		unsigned char *der = slurp(v[i].file, &len);
		struct eg_certs_only d;
		if (eg_certs_only_read(der, len, &d) != 0)
			fail_msg("%s: refused", v[i].file);
		assert_int_equal(d.ncerts, v[i].ncerts);
		expect_like(&d, "tests/vectors/cmp/pki/new.crt"); /* the first certificate in each */
		free(der);
	}
}

static void test_refused(void **state)
{
	(void)state;
	size_t len;
	unsigned char *der = slurp("fuzz/corpus/p7/two-certs.der", &len);
	struct eg_certs_only d;
	for (size_t l = 0; l < len; l++)
		assert_int_equal(eg_certs_only_read(der, l, &d), -1); /* every truncation */
	unsigned char *more = malloc(len + 1);
	memcpy(more, der, len);
	more[len] = 0;
	assert_int_equal(eg_certs_only_read(more, len + 1, &d), -1); /* trailing garbage */
	for (size_t i = 0; i < len; i++) { /* any single-byte change: refused or read, never a crash */
		memcpy(more, der, len);
		more[i] ^= 0x41;
		(void)eg_certs_only_read(more, len, &d);
	}
	free(more);
	free(der);

	/* a signedData without certificates (what a CA's error could look like), and other types */
	PKCS7 *p7 = PKCS7_new();
	assert_true(PKCS7_set_type(p7, NID_pkcs7_signed) && PKCS7_content_new(p7, NID_pkcs7_data));
	unsigned char *empty = NULL;
	int n = i2d_PKCS7(p7, &empty);
	assert_true(n > 0);
	assert_int_equal(eg_certs_only_read(empty, (size_t)n, &d), -1);
	OPENSSL_free(empty);
	PKCS7_free(p7);
	p7 = PKCS7_new();
	assert_true(PKCS7_set_type(p7, NID_pkcs7_data));
	unsigned char *data = NULL;
	n = i2d_PKCS7(p7, &data);
	assert_int_equal(eg_certs_only_read(data, (size_t)n, &d), -1);
	OPENSSL_free(data);
	PKCS7_free(p7);
	assert_int_equal(eg_certs_only_read((const unsigned char *)"hello", 5, &d), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
