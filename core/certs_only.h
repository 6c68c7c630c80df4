/* certs_only.h: the certs-only PKCS#7 of EST answers (RFC 7030 sections 4.1.3, 4.2.3; RFC 8951),
 * checked for shape and described for the audit record without decoding any public key. */
#ifndef EG_CERTS_ONLY_H
#define EG_CERTS_ONLY_H

#include <stddef.h>

#define EG_CERTS_ONLY_MAX_CERTS 64 /* more certificates in one answer: refused as malformed */

/* The first certificate, as the audit record names it. */
struct eg_certs_only {
	int ncerts;              /* >= 1 */
	char subject[256];       /* RFC 2253 form, as eg_tls_describe_cert prints it */
	char serial[80];         /* upper-case hex */
	char not_after[64];      /* "Dec  1 23:59:59 2027 GMT" (ASN1_TIME_print) */
};

/* Read der[0..len): a ContentInfo of type signedData whose certificates field holds 1 to
 * EG_CERTS_ONLY_MAX_CERTS certificates (each a Certificate SEQUENCE with a well-formed
 * TBSCertificate; keys and signatures are carried, not checked), filling the whole input.
 * 0 and *out filled, or -1. */
int eg_certs_only_read(const unsigned char *der, size_t len, struct eg_certs_only *out);

#endif
