/* fuzz_csr.c: libFuzzer target for the certification request parser (core/csr.c), which reads
 * untrusted EST/CMP bodies with OpenSSL. Each input is tried as sent and as base64 of itself;
 * a parsed request must be self-consistent (bounded counts, NUL-terminated text, the DER it
 * reports being exactly the decoded input), and agree with OpenSSL's own d2i_X509_REQ: the same
 * key (type, size, curve) as its decoders make, and the same proof-of-possession verdict as
 * X509_REQ_verify (csr.c builds the common keys itself). Also built without libFuzzer by
 * tests/unit. */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_parsed(const struct eg_csr *c)
{
	CHECK(c->nsubject >= 0 && c->nsubject <= EG_CSR_MAX_ITEMS);
	CHECK(c->nsan >= 0 && c->nsan <= EG_CSR_MAX_ITEMS);
	CHECK(c->nextensions >= 0 && c->nextensions <= EG_CSR_MAX_ITEMS);
	CHECK(memchr(c->key_type, 0, sizeof(c->key_type)) && memchr(c->curve, 0, sizeof(c->curve)));
	CHECK(memchr(c->subject_text, 0, sizeof(c->subject_text)));
	for (int i = 0; i < c->nsubject; i++)
		CHECK(memchr(c->subject[i].value, 0, sizeof(c->subject[i].value)));
	for (int i = 0; i < c->nsan; i++)
		CHECK(memchr(c->san[i].value, 0, sizeof(c->san[i].value)));
	CHECK(c->der_len > 0 && c->der_len <= EG_CSR_MAX_DER);
}

/* What OpenSSL makes of der: -1 if d2i_X509_REQ fails or it has no key, else whether
 * X509_REQ_verify accepts it; the key's description into type/bits/curve. */
static int openssl_view(const unsigned char *der, size_t len, int *type, int *bits, char *curve, size_t cap)
{
	const unsigned char *p = der;
	X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)len);
	EVP_PKEY *pk = req && p == der + len ? X509_REQ_get0_pubkey(req) : NULL;
	int rc = -1;
	size_t l = 0;
	curve[0] = '\0';
	if (pk) {
		*type = EVP_PKEY_get_base_id(pk);
		*bits = EVP_PKEY_get_bits(pk);
		int explicit_params = 0;   /* csr.h: a named curve only */
		if (*type == EVP_PKEY_EC &&
		    (EVP_PKEY_get_int_param(pk, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, &explicit_params) != 1 ||
		     explicit_params || EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, curve, cap, &l) != 1))
			curve[0] = '\0';
		rc = X509_REQ_verify(req, pk) == 1;
	}
	X509_REQ_free(req);
	ERR_clear_error();
	return rc;
}

static void parse_one(const void *buf, size_t len)
{
	struct eg_csr *c = NULL;
	char why[160];
	enum eg_csr_status st = eg_csr_parse(buf, len, &c, why, sizeof(why));
	if (st == EG_CSR_OK) {
		CHECK(c != NULL);
		check_parsed(c);
		/* the DER it keeps parses again to the same description */
		struct eg_csr *again = NULL;
		CHECK(eg_csr_parse(c->der, c->der_len, &again, why, sizeof(why)) == EG_CSR_OK);
		CHECK(strcmp(again->subject_text, c->subject_text) == 0 && again->nsan == c->nsan);
		eg_csr_free(again);
		/* OpenSSL's decoders see the same key, and X509_REQ_verify the same proof of possession */
		int type = 0, bits = 0;
		char curve[64];
		CHECK(openssl_view(c->der, c->der_len, &type, &bits, curve, sizeof(curve)) == 1);
		CHECK(bits == c->key_bits && strcmp(curve, c->curve) == 0);
		CHECK(strcmp(c->key_type, type == EVP_PKEY_RSA ? "RSA" : type == EVP_PKEY_EC ? "EC"
				: type == EVP_PKEY_ED25519 ? "ED25519" : type == EVP_PKEY_ED448 ? "ED448" : c->key_type) == 0);
	} else if (st == EG_CSR_BAD_SIGNATURE && len > 0 && ((const unsigned char *)buf)[0] == 0x30) {
		int type = 0, bits = 0;
		char curve[64];
		CHECK(openssl_view(buf, len, &type, &bits, curve, sizeof(curve)) == 0);
		CHECK(c == NULL);
	} else {
		CHECK(c == NULL && memchr(why, 0, sizeof(why)) && why[0]);
	}
	eg_csr_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 3 * EG_CSR_MAX_DER)
		return 0;
	unsigned char *copy = malloc(size ? size : 1);
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	parse_one(copy, size);
	/* the same bytes as an EST body would carry them */
	unsigned char *b64 = malloc(4 * ((size + 2) / 3) + 1);
	if (b64) {
		int n = EVP_EncodeBlock(b64, copy, (int)size);
		parse_one(b64, (size_t)n);
		free(b64);
	}
	free(copy);
	return 0;
}
