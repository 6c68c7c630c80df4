/* digest.c: SHA-256 for the bundle digest through OpenSSL's low-level SHA256_* functions.
 *
 * Why not EVP: the first EVP digest initialises OpenSSL's provider machinery (default provider,
 * name maps, algorithm tables), which touches ~2 MB of libcrypto pages. A proxy without EST or CMP
 * has no other use for OpenSSL, and those 2 MB were 30 % of its idle RSS (docs/performance.md).
 * The low-level functions are deprecated in OpenSSL 3.0 but present in every 3.x; a libcrypto
 * built without them (OPENSSL_NO_DEPRECATED_3_0) gets the EVP path instead. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

struct eg_sha256 {
#ifndef OPENSSL_NO_DEPRECATED_3_0
	SHA256_CTX c;
#else
	EVP_MD_CTX *c;
#endif
};

struct eg_sha256 *eg_sha256_new(void)
{
	struct eg_sha256 *d = malloc(sizeof(*d));
	if (!d)
		return NULL;
#ifndef OPENSSL_NO_DEPRECATED_3_0
	SHA256_Init(&d->c);
#else
	d->c = EVP_MD_CTX_new();
	if (!d->c || !EVP_DigestInit_ex(d->c, EVP_sha256(), NULL)) {
		eg_sha256_free(d);
		return NULL;
	}
#endif
	return d;
}

void eg_sha256_update(struct eg_sha256 *d, const void *p, size_t n)
{
#ifndef OPENSSL_NO_DEPRECATED_3_0
	SHA256_Update(&d->c, p, n);
#else
	EVP_DigestUpdate(d->c, p, n);
#endif
}

void eg_sha256_final(struct eg_sha256 *d, char hex[65])
{
	unsigned char md[32] = { 0 };
#ifndef OPENSSL_NO_DEPRECATED_3_0
	SHA256_Final(md, &d->c);
#else
	unsigned int n = 0;
	EVP_DigestFinal_ex(d->c, md, &n);
#endif
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	eg_sha256_free(d);
}

void eg_sha256_free(struct eg_sha256 *d)
{
	if (!d)
		return;
#ifdef OPENSSL_NO_DEPRECATED_3_0
	EVP_MD_CTX_free(d->c);
#endif
	free(d);
}
