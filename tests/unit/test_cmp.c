/* Unit tests of core/cmp_msg.c: PKIMessage parsing (every request type openssl cmp sends),
 * the description policy sees, MAC and signature protection checks (wrong secret, unknown
 * issuer, revoked signer, stale or missing CRL, tampered signature), CMP error messages, and
 * hostile input. Vectors: tests/vectors/cmp/ (made by make-vectors.sh with openssl cmp). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <openssl/cmp.h>
#include <openssl/crmf.h>
#include <openssl/objects.h>
#include <openssl/rand.h>

#include "cmp_msg.h"
#include "csr.h"
#include "pbm.h"

#define VEC EG_TEST_SOURCE_DIR "/tests/vectors/cmp/"

static const unsigned char secret[] = "test1234";

static unsigned char *slurp(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), VEC "%s", name);
	FILE *f = fopen(path, "rb");
	if (!f)
		fail_msg("cannot open %s", path);
	unsigned char *buf = malloc(1 << 20);
	assert_non_null(buf);
	*len = fread(buf, 1, 1 << 20, f);
	fclose(f);
	return buf;
}

static struct eg_cmp_msg *parse_vector(const char *name)
{
	size_t len;
	unsigned char *der = slurp(name, &len);
	struct eg_cmp_msg *m = NULL;
	char why[200] = "";
	enum eg_cmp_status st = eg_cmp_parse(der, len, &m, why, sizeof(why));
	free(der);
	if (st != EG_CMP_OK)
		fail_msg("%s: parse failed (%d): %s", name, st, why);
	return m;
}

static X509_STORE *store(const char *issuers, const char *crls)
{
	char why[300] = "";
	X509_STORE *st = eg_cmp_trust_store(issuers, crls, why, sizeof(why));
	if (!st)
		fail_msg("trust store: %s", why);
	return st;
}

static void test_types_and_header(void **state)
{
	(void)state;
	static const struct { const char *file, *type; enum eg_cmp_protection prot; int nreq; } v[] = {
		{"ir-mac.der", "ir", EG_CMP_PROT_MAC, 1},
		{"certconf-mac.der", "certConf", EG_CMP_PROT_MAC, 0},
		{"cr-sig.der", "cr", EG_CMP_PROT_SIGNATURE, 1},
		{"certconf-sig.der", "certConf", EG_CMP_PROT_SIGNATURE, 0},
		{"p10cr-sig.der", "p10cr", EG_CMP_PROT_SIGNATURE, 1},
		{"kur-sig.der", "kur", EG_CMP_PROT_SIGNATURE, 1},
		{"rr-sig.der", "rr", EG_CMP_PROT_SIGNATURE, 0},
		{"genm-mac.der", "genm", EG_CMP_PROT_MAC, 0},
		{"pollreq-mac.der", "pollReq", EG_CMP_PROT_MAC, 0},
		{"ir-none.der", "ir", EG_CMP_PROT_NONE, 1},
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct eg_cmp_msg *m = parse_vector(v[i].file);
		if (strcmp(eg_cmp_type_name(m->body_type), v[i].type) != 0)
			fail_msg("%s: type %s", v[i].file, eg_cmp_type_name(m->body_type));
		assert_int_equal(m->protection, v[i].prot);
		assert_int_equal(m->nrequests, v[i].nreq);
		assert_null(m->content_error);
		assert_int_equal(m->pvno, 2);
		assert_int_equal(strlen(m->transaction_id), 32); /* 16 random bytes, hex */
		/* -recipient when given, else the issuer of the client's certificate */
		assert_string_equal(m->recipient, v[i].prot == EG_CMP_PROT_SIGNATURE ? "CN=enrollgate test root" : "CN=cmp-srv");
		if (v[i].prot == EG_CMP_PROT_MAC) {
			assert_string_equal(m->protection_alg, "PBM");
			assert_string_equal(m->sender_kid, "1234");
			assert_int_equal(m->kid_len, 4);
		}
		if (v[i].prot == EG_CMP_PROT_SIGNATURE) {
			assert_string_equal(m->protection_alg, "ecdsa-with-SHA256");
			assert_true(m->nextra_certs >= 1);
		}
		eg_cmp_msg_free(m);
	}
	assert_int_equal(eg_cmp_type_by_name("p10cr"), EG_CMP_P10CR);
	assert_int_equal(eg_cmp_type_by_name("certConf"), EG_CMP_CERTCONF);
	assert_int_equal(eg_cmp_type_by_name("IR"), -1);
	assert_string_equal(eg_cmp_type_name(99), "unknown");
}

static void test_templates(void **state)
{
	(void)state;
	struct eg_cmp_msg *m = parse_vector("ir-mac.der");
	struct eg_csr *c = m->requests[0];
	assert_string_equal(c->key_type, "EC");
	assert_string_equal(c->curve, "prime256v1");
	assert_int_equal(c->nsubject, 1);
	assert_string_equal(c->subject[0].type, "CN");
	assert_string_equal(c->subject[0].value, "device1");
	assert_int_equal(c->nsan, 1);
	assert_string_equal(c->san[0].type, "dns");
	assert_string_equal(c->san[0].value, "device1.example.com");
	assert_string_equal(m->sender, "CN=device1");
	eg_cmp_msg_free(m);

	/* the p10cr's PKCS#10 request, described like an EST one */
	m = parse_vector("p10cr-sig.der");
	c = m->requests[0];
	assert_string_equal(c->subject_text, "CN=device1");
	assert_string_equal(c->san[0].value, "device1.example.com");
	assert_string_equal(c->curve, "prime256v1");
	assert_string_equal(m->sender, "CN=cmp-client");
	eg_cmp_msg_free(m);

	m = parse_vector("ir-mac-rsa1024.der");
	assert_string_equal(m->requests[0]->key_type, "RSA");
	assert_int_equal(m->requests[0]->key_bits, 1024);
	eg_cmp_msg_free(m);

	/* kur: the subject defaults to the old certificate's */
	m = parse_vector("kur-sig.der");
	assert_string_equal(m->requests[0]->subject_text, "CN=cmp-new");
	eg_cmp_msg_free(m);
}

static void test_mac(void **state)
{
	(void)state;
	char detail[200];
	const char *files[] = {"ir-mac.der", "certconf-mac.der", "genm-mac.der", "pollreq-mac.der"};
	for (size_t i = 0; i < 4; i++) {
		struct eg_cmp_msg *m = parse_vector(files[i]);
		assert_null(eg_cmp_check_mac(m, secret, 8, detail, sizeof(detail)));
		assert_string_equal(eg_cmp_check_mac(m, (const unsigned char *)"test1235", 8, detail, sizeof(detail)),
				    "mac_failed");
		assert_non_null(strstr(detail, "1234"));
		assert_string_equal(eg_cmp_check_signature(m, NULL, detail, sizeof(detail)), "wrong_protection");
		eg_cmp_msg_free(m);
	}
	struct eg_cmp_msg *m = parse_vector("cr-sig.der");
	assert_string_equal(eg_cmp_check_mac(m, secret, 8, detail, sizeof(detail)), "wrong_protection");
	eg_cmp_msg_free(m);
	m = parse_vector("ir-none.der");
	assert_string_equal(eg_cmp_check_mac(m, secret, 8, detail, sizeof(detail)), "wrong_protection");
	eg_cmp_msg_free(m);
}

static void test_signature(void **state)
{
	(void)state;
	char detail[200];
	X509_STORE *root = store(VEC "pki/root.crt", NULL);
	X509_STORE *other = store(VEC "pki/other-root.crt", NULL);
	X509_STORE *with_crl = store(VEC "pki/root.crt", VEC "pki/crl.pem");
	X509_STORE *stale = store(VEC "pki/root.crt", VEC "pki/crl-stale.pem");
	X509_STORE *dir = store(VEC "pki", VEC "pki/crl.pem");   /* a directory of PEM files */

	const char *good[] = {"cr-sig.der", "certconf-sig.der", "p10cr-sig.der", "rr-sig.der", "kur-sig.der"};
	for (size_t i = 0; i < 5; i++) {
		struct eg_cmp_msg *m = parse_vector(good[i]);
		const char *r = eg_cmp_check_signature(m, root, detail, sizeof(detail));
		if (r)
			fail_msg("%s: %s (%s)", good[i], r, detail);
		assert_null(eg_cmp_check_signature(m, with_crl, detail, sizeof(detail)));
		assert_string_equal(eg_cmp_check_signature(m, other, detail, sizeof(detail)), "signer_untrusted");
		assert_string_equal(eg_cmp_check_signature(m, stale, detail, sizeof(detail)), "revocation_unknown");
		assert_string_equal(eg_cmp_check_signature(m, NULL, detail, sizeof(detail)), "no_chains");
		eg_cmp_msg_free(m);
	}

	struct eg_cmp_msg *m = parse_vector("cr-sig-revoked.der");
	assert_null(eg_cmp_check_signature(m, root, detail, sizeof(detail)));  /* no CRLs: not checked */
	assert_string_equal(eg_cmp_check_signature(m, with_crl, detail, sizeof(detail)), "signer_revoked");
	assert_non_null(strstr(detail, "revoked"));
	assert_string_equal(eg_cmp_check_signature(m, dir, detail, sizeof(detail)), "signer_revoked");
	struct eg_csr *signer = eg_cmp_signer(m);
	assert_non_null(signer);
	assert_string_equal(signer->subject_text, "CN=cmp-revoked");
	eg_csr_free(signer);
	eg_cmp_msg_free(m);

	m = parse_vector("cr-sig-stranger.der");
	assert_string_equal(eg_cmp_check_signature(m, root, detail, sizeof(detail)), "signer_untrusted");
	assert_null(eg_cmp_check_signature(m, other, detail, sizeof(detail)));
	eg_cmp_msg_free(m);

	/* a flipped bit in the signature (the last byte of the message) */
	size_t len;
	unsigned char *der = slurp("cr-sig.der", &len);
	struct eg_cmp_msg *t = NULL;
	char why[200];
	unsigned char *copy = malloc(len);
	memcpy(copy, der, len);
	/* extraCerts follow the protection: flip a byte of the signature value, found before them */
	unsigned char *ec = NULL;
	for (size_t i = len - 4; i > 0 && !ec; i--)
		if (copy[i] == 0xa1 && copy[i + 1] == 0x82)  /* [1] extraCerts, long length */
			ec = copy + i;
	assert_non_null(ec);
	ec[-3] ^= 0x01;
	t = NULL;
	assert_int_equal(eg_cmp_parse(copy, len, &t, why, sizeof(why)), EG_CMP_OK);
	assert_string_equal(eg_cmp_check_signature(t, root, detail, sizeof(detail)), "signature_failed");
	eg_cmp_msg_free(t);

	/* the same message without its extraCerts (the last element): no signer to check */
	const unsigned char *q = der;
	long outer_len;
	int tag, cls;
	assert_int_equal(ASN1_get_object(&q, &outer_len, &tag, &cls, (long)len) & 0x80, 0);
	size_t hdr = (size_t)(q - der), content = (size_t)(ec - copy) - hdr;
	unsigned char *bare = malloc(len), *w = bare;
	ASN1_put_object(&w, 1, (int)content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(w, der + hdr, content);
	size_t bare_len = (size_t)(w - bare) + content;
	t = NULL;
	assert_int_equal(eg_cmp_parse(bare, bare_len, &t, why, sizeof(why)), EG_CMP_OK);
	assert_int_equal(t->nextra_certs, 0);
	assert_string_equal(eg_cmp_check_signature(t, root, detail, sizeof(detail)), "signature_no_cert");
	eg_cmp_msg_free(t);
	free(bare);
	free(copy);
	free(der);

	/* MAC-protected and unprotected messages are no signature */
	m = parse_vector("ir-mac.der");
	assert_string_equal(eg_cmp_check_signature(m, root, detail, sizeof(detail)), "wrong_protection");
	eg_cmp_msg_free(m);

	char e[300];
	assert_null(eg_cmp_trust_store(VEC "no-such-file.pem", NULL, e, sizeof(e)));
	assert_non_null(strstr(e, "not found"));
	assert_null(eg_cmp_trust_store(VEC "ir-mac.der", NULL, e, sizeof(e)));
	assert_null(eg_cmp_trust_store(VEC "pki/crl.pem", NULL, e, sizeof(e)));  /* CRLs only */
	assert_non_null(strstr(e, "no certificates"));
	/* CRL checking without a CRL (not there yet): the signer's status is unknown */
	X509_STORE *no_crl = store(VEC "pki/root.crt", VEC "pki/no-such-crl.pem");
	X509_STORE *empty_crl = store(VEC "pki/root.crt", VEC "pki/root.crt");  /* a file without CRLs */
	m = parse_vector("cr-sig.der");
	assert_string_equal(eg_cmp_check_signature(m, no_crl, detail, sizeof(detail)), "revocation_unknown");
	assert_string_equal(eg_cmp_check_signature(m, empty_crl, detail, sizeof(detail)), "revocation_unknown");
	assert_non_null(strstr(detail, "CRL"));
	eg_cmp_msg_free(m);
	X509_STORE_free(no_crl);
	X509_STORE_free(empty_crl);
	X509_STORE_free(root);
	X509_STORE_free(other);
	X509_STORE_free(with_crl);
	X509_STORE_free(stale);
	X509_STORE_free(dir);
}

/* The error answer parses with OpenSSL as an error message for exactly this transaction. */
static void test_error_message(void **state)
{
	(void)state;
	size_t len, rlen;
	unsigned char *req = slurp("ir-mac.der", &rlen);
	struct eg_cmp_msg *m = parse_vector("ir-mac.der");
	unsigned char *der = eg_cmp_error_der(m, eg_cmp_failinfo_bit("systemUnavail"), "CA not reachable", &len);
	assert_non_null(der);
	struct eg_cmp_msg *e = NULL;
	char why[200];
	assert_int_equal(eg_cmp_parse(der, len, &e, why, sizeof(why)), EG_CMP_OK);
	assert_int_equal(e->body_type, EG_CMP_ERROR);
	assert_int_equal(e->protection, EG_CMP_PROT_NONE);
	assert_string_equal(e->transaction_id, m->transaction_id);
	assert_string_equal(e->sender, m->recipient);   /* the CA's name as the client addressed it */
	assert_string_equal(e->recipient, m->sender);
	/* recipNonce is the request's senderNonce: 16 bytes that occur in the request */
	const ASN1_OCTET_STRING *rn = OSSL_CMP_HDR_get0_recipNonce(OSSL_CMP_MSG_get0_header(e->msg));
	assert_non_null(rn);
	assert_int_equal(ASN1_STRING_length(rn), 16);
	assert_non_null(memmem(req, rlen, ASN1_STRING_get0_data(rn), 16));
	/* status as OpenSSL prints it for the client */
	char st[300];
	assert_int_equal(eg_cmp_error_text(e, st, sizeof(st)), 0);
	assert_non_null(strstr(st, "rejection"));
	assert_non_null(strstr(st, "systemUnavail"));
	assert_non_null(strstr(st, "CA not reachable"));
	assert_int_equal(eg_cmp_error_text(m, st, sizeof(st)), -1);  /* an ir is no error message */
	eg_cmp_msg_free(e);
	OPENSSL_free(der);

	/* failInfo bits: badRequest is bit 2, systemUnavail bit 24 */
	assert_int_equal(eg_cmp_failinfo_bit("badRequest"), 2);
	assert_int_equal(eg_cmp_failinfo_bit("systemUnavail"), 24);
	assert_int_equal(eg_cmp_failinfo_bit("badPOP"), 9);
	assert_int_equal(eg_cmp_failinfo_bit("nonsense"), -1);

	/* no request to answer (junk body): NULL-DN names, no transactionID, still a PKIMessage */
	der = eg_cmp_error_der(NULL, 2, "not a PKIMessage", &len);
	assert_non_null(der);
	e = NULL;
	assert_int_equal(eg_cmp_parse(der, len, &e, why, sizeof(why)), EG_CMP_OK);
	assert_int_equal(e->body_type, EG_CMP_ERROR);
	assert_string_equal(e->transaction_id, "");
	assert_string_equal(e->sender, "");
	eg_cmp_msg_free(e);
	OPENSSL_free(der);
	eg_cmp_msg_free(m);
	free(req);
}

/* The shallow body-type read (audit of CA answers) agrees with the full parse on every vector and
 * on the error messages we build, and refuses what is not shaped like a whole PKIMessage. */
static void test_peek_body_type(void **state)
{
	(void)state;
	static const char *files[] = { "ir-mac.der", "certconf-mac.der", "cr-sig.der", "p10cr-sig.der", "kur-sig.der",
				       "rr-sig.der", "genm-mac.der", "pollreq-mac.der", "ir-none.der" };
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		size_t len;
		unsigned char *der = slurp(files[i], &len);
		struct eg_cmp_msg *m = parse_vector(files[i]);
		assert_int_equal(eg_cmp_peek_body_type(der, len), m->body_type);
		for (size_t l = 0; l < len; l += 7)
			assert_int_equal(eg_cmp_peek_body_type(der, l), -1); /* truncated */
		unsigned char *more = malloc(len + 1);
		memcpy(more, der, len);
		more[len] = 0;
		assert_int_equal(eg_cmp_peek_body_type(more, len + 1), -1); /* trailing byte */
		free(more);
		size_t elen;
		unsigned char *e = eg_cmp_error_der(m, 2, "x", &elen);
		assert_int_equal(eg_cmp_peek_body_type(e, elen), EG_CMP_ERROR);
		OPENSSL_free(e);
		eg_cmp_msg_free(m);
		free(der);
	}
	assert_int_equal(eg_cmp_peek_body_type("hello", 5), -1);
	assert_int_equal(eg_cmp_peek_body_type("\x30\x00", 2), -1);              /* no header */
	assert_int_equal(eg_cmp_peek_body_type("\x30\x04\x30\x00\x04\x00", 6), -1); /* body not [n] */
	assert_int_equal(eg_cmp_peek_body_type("\x30\x04\x30\x00\xb5\x00", 6), 21); /* [21] genm */
	assert_int_equal(eg_cmp_peek_body_type("\x30\x04\x30\x00\xbf\x1f\x00", 7), -1);
}

static void test_hostile(void **state)
{
	(void)state;
	struct eg_cmp_msg *m = NULL;
	char why[200];
	assert_int_equal(eg_cmp_parse("", 0, &m, why, sizeof(why)), EG_CMP_EMPTY);
	assert_int_equal(eg_cmp_parse("hello", 5, &m, why, sizeof(why)), EG_CMP_BAD_DER);
	assert_null(m);
	assert_string_equal(why, "not a DER PKIMessage");
	unsigned char big[16];
	assert_int_equal(eg_cmp_parse(big, EG_CMP_MAX_DER + 1, &m, why, sizeof(why)), EG_CMP_TOO_LARGE);

	size_t len;
	unsigned char *der = slurp("ir-mac.der", &len);
	/* every truncation is refused */
	for (size_t l = 1; l < len; l++) {
		assert_int_equal(eg_cmp_parse(der, l, &m, why, sizeof(why)), EG_CMP_BAD_DER);
		assert_null(m);
	}
	/* trailing garbage is refused */
	unsigned char *more = malloc(len + 2);
	memcpy(more, der, len);
	more[len] = 0;
	more[len + 1] = 0;
	assert_int_equal(eg_cmp_parse(more, len + 2, &m, why, sizeof(why)), EG_CMP_BAD_DER);
	/* every single-byte change either parses or is refused, never crashes */
	for (size_t i = 0; i < len; i++) {
		memcpy(more, der, len);
		more[i] ^= 0x5a;
		if (eg_cmp_parse(more, len, &m, why, sizeof(why)) == EG_CMP_OK)
			eg_cmp_msg_free(m);
		m = NULL;
	}
	free(more);
	free(der);
}

/* core/pbm.c against OpenSSL's OSSL_CRMF_pbm_new: every one-way function and MAC it takes,
 * iteration counts, secrets shorter and longer than a hash block, empty and long data. */
static void test_pbm_matches_openssl(void **state)
{
	(void)state;
	const int owfs[] = { NID_sha1, NID_sha224, NID_sha256, NID_sha384, NID_sha512 };
	const int macs[] = { NID_hmac_sha1, NID_hmacWithSHA224, NID_hmacWithSHA256, NID_hmacWithSHA384,
			     NID_hmacWithSHA512 };
	const int iters[] = { 100, 501 };
	const size_t secret_lens[] = { 1, 8, 64, 200 }, data_lens[] = { 0, 1, 300, 5000 };
	unsigned char sec[200], data[5000];
	RAND_bytes(sec, sizeof(sec));
	RAND_bytes(data, sizeof(data));
	int n = 0;
	for (size_t o = 0; o < 5; o++)
		for (size_t a = 0; a < 5; a++)
			for (size_t i = 0; i < 2; i++) {
				OSSL_CRMF_PBMPARAMETER *pp = OSSL_CRMF_pbmp_new(NULL, 16, owfs[o], iters[i], macs[a]);
				assert_non_null(pp);
				unsigned char *param = NULL;
				int plen = i2d_OSSL_CRMF_PBMPARAMETER(pp, &param);
				assert_true(plen > 0);
				size_t sl = secret_lens[(o + a + i) % 4], dl = data_lens[(o * 5 + a + i) % 4];
				unsigned char *want = NULL, got[64];
				size_t want_len = 0;
				assert_int_equal(OSSL_CRMF_pbm_new(NULL, NULL, pp, data, dl, sec, sl, &want, &want_len), 1);
				int gl = eg_pbm_compute(param, (size_t)plen, sec, sl, data, dl, got);
				assert_int_equal(gl, (int)want_len);
				assert_memory_equal(got, want, want_len);
				assert_int_equal(eg_pbm_verify(param, (size_t)plen, sec, sl, data, dl, want, want_len), 1);
				want[want_len - 1] ^= 1;
				assert_int_equal(eg_pbm_verify(param, (size_t)plen, sec, sl, data, dl, want, want_len), 0);
				assert_int_equal(eg_pbm_verify(param, (size_t)plen, sec, sl, data, dl, want, want_len - 1), 0);
				OPENSSL_free(want);
				OPENSSL_free(param);
				OSSL_CRMF_PBMPARAMETER_free(pp);
				n++;
			}
	assert_int_equal(n, 50);
}

/* What the fast path leaves to OpenSSL (-1): iteration counts outside 100..100000, a one-way
 * function or MAC it does not know, parameters that do not parse. */
static void test_pbm_declines(void **state)
{
	(void)state;
	unsigned char out[64], *param = NULL;
	struct { int owf, iter, mac; } cases[] = {
		{ NID_sha256, 99, NID_hmac_sha1 },
		{ NID_sha256, EG_PBM_MAX_ITERATIONS + 1, NID_hmac_sha1 },
		{ NID_md5, 500, NID_hmac_sha1 },
		{ NID_sha256, 500, NID_hmac_md5 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* OSSL_CRMF_pbmp_new refuses a count below 100: build with 100 and set it after */
		OSSL_CRMF_PBMPARAMETER *pp = OSSL_CRMF_pbmp_new(NULL, 16, cases[i].owf, 100, cases[i].mac);
		assert_non_null(pp);
		int plen = i2d_OSSL_CRMF_PBMPARAMETER(pp, &param);
		assert_true(plen > 0);
		/* the INTEGER 100 (02 01 64) is the only one in the encoding: patch the count in place
		 * when it fits in one byte, else re-encode through a template of our own below */
		unsigned char *q = param;
		if (cases[i].iter == 99) {
			unsigned char *hit = memmem(param, (size_t)plen, "\x02\x01\x64", 3);
			assert_non_null(hit);
			hit[2] = 99;
		} else if (cases[i].iter > 100) {
			unsigned char *hit = memmem(param, (size_t)plen, "\x02\x01\x64", 3);
			assert_non_null(hit);
			/* 100001 = 0x0186A1 needs three bytes: rebuild the SEQUENCE by hand */
			size_t before = (size_t)(hit - param), after = (size_t)plen - before - 3;
			unsigned char *big = malloc((size_t)plen + 2);
			memcpy(big, param, before);
			memcpy(big + before, "\x02\x03\x01\x86\xa1", 5);
			memcpy(big + before + 5, hit + 3, after);
			assert_true(big[1] < 0x7e);   /* short-form outer length */
			big[1] += 2;
			OPENSSL_free(param);
			param = (unsigned char *)OPENSSL_memdup(big, (size_t)plen + 2);
			free(big);
			plen += 2;
			q = param;
		}
		const unsigned char *d = q;   /* the patched parameters still parse */
		OSSL_CRMF_PBMPARAMETER *back = d2i_OSSL_CRMF_PBMPARAMETER(NULL, &d, plen);
		assert_non_null(back);
		assert_ptr_equal(d, q + plen);
		OSSL_CRMF_PBMPARAMETER_free(back);
		assert_int_equal(eg_pbm_compute(q, (size_t)plen, secret, 8, (const unsigned char *)"x", 1, out), -1);
		OPENSSL_free(param);
		param = NULL;
		OSSL_CRMF_PBMPARAMETER_free(pp);
	}
	assert_int_equal(eg_pbm_compute((const unsigned char *)"\x30\x00", 2, secret, 8, (const unsigned char *)"x", 1, out), -1);
	assert_int_equal(eg_pbm_compute((const unsigned char *)"junk", 4, secret, 8, (const unsigned char *)"x", 1, out), -1);
}

/* The messages openssl cmp sends are decided by the fast path: their ProtectedPart is kept as
 * received and the MAC verifies there with the right secret only. */
static void test_pbm_on_vectors(void **state)
{
	(void)state;
	const char *files[] = {"ir-mac.der", "certconf-mac.der", "genm-mac.der", "pollreq-mac.der", "ir-mac-poll.der"};
	for (size_t i = 0; i < 5; i++) {
		struct eg_cmp_msg *m = parse_vector(files[i]);
		assert_non_null(m->protected_part);
		assert_int_equal(eg_cmp_pbm_fast(m, secret, 8), 1);
		assert_int_equal(eg_cmp_pbm_fast(m, (const unsigned char *)"test1235", 8), 0);
		assert_int_equal(eg_cmp_pbm_fast(m, secret, 7), 0);
		eg_cmp_msg_free(m);
	}
	struct eg_cmp_msg *m = parse_vector("cr-sig.der");
	assert_null(m->protected_part);
	assert_int_equal(eg_cmp_pbm_fast(m, secret, 8), -1);
	eg_cmp_msg_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_types_and_header),
		cmocka_unit_test(test_templates),
		cmocka_unit_test(test_mac),
		cmocka_unit_test(test_signature),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_peek_body_type),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_pbm_matches_openssl),
		cmocka_unit_test(test_pbm_declines),
		cmocka_unit_test(test_pbm_on_vectors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
