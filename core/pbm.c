/* pbm.c: CMP's password-based MAC with OpenSSL's low-level SHA-1/SHA-2; see pbm.h.
 *
 * PBM (RFC 4211 section 4.4): K = OWF^iterationCount(secret || salt), then MAC = HMAC(K, data)
 * with the hash the MAC algorithm names. The low-level SHA*_ functions are deprecated in
 * OpenSSL 3.0 but present in every 3.x (as core/digest.c uses them); without them every call
 * answers -1 and the caller's OpenSSL path decides. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "pbm.h"

#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/crypto.h>
#include <openssl/objects.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

/* PBMParameter ::= SEQUENCE { salt OCTET STRING, owf AlgorithmIdentifier,
 *                             iterationCount INTEGER, mac AlgorithmIdentifier } */
typedef struct {
	ASN1_OCTET_STRING *salt;
	X509_ALGOR *owf;
	ASN1_INTEGER *iterations;
	X509_ALGOR *mac;
} EG_PBM_PARAM;

ASN1_SEQUENCE(EG_PBM_PARAM) = {
	ASN1_SIMPLE(EG_PBM_PARAM, salt, ASN1_OCTET_STRING),
	ASN1_SIMPLE(EG_PBM_PARAM, owf, X509_ALGOR),
	ASN1_SIMPLE(EG_PBM_PARAM, iterations, ASN1_INTEGER),
	ASN1_SIMPLE(EG_PBM_PARAM, mac, X509_ALGOR),
} static_ASN1_SEQUENCE_END(EG_PBM_PARAM)

#ifndef OPENSSL_NO_DEPRECATED_3_0

union hctx {
	SHA_CTX s1;
	SHA256_CTX s256;
	SHA512_CTX s512;
};

struct hash {
	size_t out, block;
	void (*init)(union hctx *);
	void (*update)(union hctx *, const void *, size_t);
	void (*final)(unsigned char *, union hctx *);
};

#define HASH_FNS(name, field, prefix)                                                                      \
	static void name##_init(union hctx *c) { prefix##_Init(&c->field); }                                \
	static void name##_update(union hctx *c, const void *p, size_t n) { prefix##_Update(&c->field, p, n); } \
	static void name##_final(unsigned char *o, union hctx *c) { prefix##_Final(o, &c->field); }
HASH_FNS(sha1, s1, SHA1)
HASH_FNS(sha224, s256, SHA224)
HASH_FNS(sha256, s256, SHA256)
HASH_FNS(sha384, s512, SHA384)
HASH_FNS(sha512, s512, SHA512)
#define HASH(name, out, block) { out, block, name##_init, name##_update, name##_final }

static const struct hash SHA1_H = HASH(sha1, 20, 64), SHA224_H = HASH(sha224, 28, 64), SHA256_H = HASH(sha256, 32, 64),
			 SHA384_H = HASH(sha384, 48, 128), SHA512_H = HASH(sha512, 64, 128);

/* The hash of a one-way function OID, or NULL. */
static const struct hash *owf_hash(const X509_ALGOR *a)
{
	switch (OBJ_obj2nid(a->algorithm)) {
	case NID_sha1: return &SHA1_H;
	case NID_sha224: return &SHA224_H;
	case NID_sha256: return &SHA256_H;
	case NID_sha384: return &SHA384_H;
	case NID_sha512: return &SHA512_H;
	default: return NULL;
	}
}

/* The hash of an HMAC algorithm OID (the ones OpenSSL's PBM maps to a digest), or NULL. */
static const struct hash *mac_hash(const X509_ALGOR *a)
{
	switch (OBJ_obj2nid(a->algorithm)) {
	case NID_hmac_sha1:
	case NID_hmacWithSHA1: return &SHA1_H;
	case NID_hmacWithSHA224: return &SHA224_H;
	case NID_hmacWithSHA256: return &SHA256_H;
	case NID_hmacWithSHA384: return &SHA384_H;
	case NID_hmacWithSHA512: return &SHA512_H;
	default: return NULL;
	}
}

/* HMAC (RFC 2104) of data under key with h, into out (h->out bytes). */
static void hmac(const struct hash *h, const unsigned char *key, size_t klen, const unsigned char *data,
		 size_t dlen, unsigned char *out)
{
	unsigned char k0[128] = { 0 }, pad[128], inner[64];
	union hctx c;
	if (klen > h->block) {
		h->init(&c);
		h->update(&c, key, klen);
		h->final(k0, &c);
	} else {
		memcpy(k0, key, klen);
	}
	for (size_t i = 0; i < h->block; i++)
		pad[i] = k0[i] ^ 0x36;
	h->init(&c);
	h->update(&c, pad, h->block);
	h->update(&c, data, dlen);
	h->final(inner, &c);
	for (size_t i = 0; i < h->block; i++)
		pad[i] = k0[i] ^ 0x5c;
	h->init(&c);
	h->update(&c, pad, h->block);
	h->update(&c, inner, h->out);
	h->final(out, &c);
	OPENSSL_cleanse(k0, sizeof(k0));
	OPENSSL_cleanse(pad, sizeof(pad));
	OPENSSL_cleanse(inner, sizeof(inner));
	OPENSSL_cleanse(&c, sizeof(c));
}

int eg_pbm_compute(const unsigned char *param, size_t param_len, const unsigned char *secret, size_t secret_len,
		   const unsigned char *data, size_t data_len, unsigned char out[64])
{
	const unsigned char *p = param;
	EG_PBM_PARAM *pp = param_len <= LONG_MAX
				   ? (EG_PBM_PARAM *)ASN1_item_d2i(NULL, &p, (long)param_len, ASN1_ITEM_rptr(EG_PBM_PARAM))
				   : NULL;
	int64_t iterations = 0;
	const struct hash *owf = NULL, *mac = NULL;
	int n = -1;
	if (!pp || p != param + param_len || !ASN1_INTEGER_get_int64(&iterations, pp->iterations) ||
	    iterations < 100 || iterations > EG_PBM_MAX_ITERATIONS || !(owf = owf_hash(pp->owf)) ||
	    !(mac = mac_hash(pp->mac)))
		goto done;
	unsigned char key[64];
	union hctx c;
	owf->init(&c);
	owf->update(&c, secret, secret_len);
	owf->update(&c, ASN1_STRING_get0_data(pp->salt), (size_t)ASN1_STRING_length(pp->salt));
	owf->final(key, &c);
	for (int64_t i = 1; i < iterations; i++) {
		owf->init(&c);
		owf->update(&c, key, owf->out);
		owf->final(key, &c);
	}
	hmac(mac, key, owf->out, data, data_len, out);
	OPENSSL_cleanse(key, sizeof(key));
	OPENSSL_cleanse(&c, sizeof(c));
	n = (int)mac->out;
done:
	ASN1_item_free((ASN1_VALUE *)pp, ASN1_ITEM_rptr(EG_PBM_PARAM));
	return n;
}

#else /* a libcrypto without the low-level digests: OpenSSL's own PBM decides */

int eg_pbm_compute(const unsigned char *param, size_t param_len, const unsigned char *secret, size_t secret_len,
		   const unsigned char *data, size_t data_len, unsigned char out[64])
{
	(void)param, (void)param_len, (void)secret, (void)secret_len, (void)data, (void)data_len, (void)out;
	return -1;
}

#endif

int eg_pbm_verify(const unsigned char *param, size_t param_len, const unsigned char *secret, size_t secret_len,
		  const unsigned char *data, size_t data_len, const unsigned char *mac, size_t mac_len)
{
	unsigned char out[64];
	int n = eg_pbm_compute(param, param_len, secret, secret_len, data, data_len, out);
	if (n < 0)
		return -1;
	int ok = (size_t)n == mac_len && CRYPTO_memcmp(out, mac, mac_len) == 0;
	OPENSSL_cleanse(out, sizeof(out));
	return ok;
}
