/* fuzz_certs_only.c: libFuzzer target for the reader of EST's certs-only PKCS#7 answers
 * (core/certs_only.c), which reads what an upstream CA sends. Whatever it accepts has 1 to
 * EG_CERTS_ONLY_MAX_CERTS certificates and NUL-terminated descriptions; d2i_PKCS7 must accept it
 * too (the reader is a stricter view of the same structure). Also built without libFuzzer by
 * tests/unit. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

#include "fuzz_check.h"
#include "certs_only.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct eg_certs_only d;
	if (eg_certs_only_read(data, size, &d) != 0)
		return 0;
	CHECK(d.ncerts >= 1 && d.ncerts <= EG_CERTS_ONLY_MAX_CERTS);
	CHECK(memchr(d.subject, 0, sizeof(d.subject)) && memchr(d.serial, 0, sizeof(d.serial)));
	CHECK(memchr(d.not_after, 0, sizeof(d.not_after)) && d.serial[0] && d.not_after[0]);
	const unsigned char *p = data;
	PKCS7 *p7 = d2i_PKCS7(NULL, &p, (long)size);
	CHECK(p7 && PKCS7_type_is_signed(p7) && sk_X509_num(p7->d.sign->cert) == d.ncerts);
	PKCS7_free(p7);
	return 0;
}
