/* csr.h: PKCS#10 certification requests as enrollment protocols carry them (EST bodies: base64
 * with or without line breaks, RFC 7030 §4.2.1 / RFC 8951; or DER), parsed with OpenSSL into an
 * immutable description that policy decides on. Parsing includes proof of possession: the
 * request's self-signature must verify with the public key it carries. */
#ifndef EG_CSR_H
#define EG_CSR_H

#include <stddef.h>

#include <openssl/x509.h>

#define EG_CSR_MAX_DER (64 * 1024)  /* larger requests are refused before decoding */
#define EG_CSR_MAX_ITEMS 64         /* subject attributes, SANs, extensions: more is refused */
#define EG_CSR_VALUE_MAX 256        /* one attribute or SAN value (longer is refused) */

enum eg_csr_status {
	EG_CSR_OK = 0,
	EG_CSR_EMPTY,          /* no body */
	EG_CSR_TOO_LARGE,      /* over EG_CSR_MAX_DER, or too many / too long names */
	EG_CSR_BAD_ENCODING,   /* not base64 (nor DER) */
	EG_CSR_BAD_DER,        /* not a PKCS#10 CertificationRequest */
	EG_CSR_BAD_KEY,        /* public key missing or not usable */
	EG_CSR_BAD_SIGNATURE,  /* self-signature does not verify: no proof of possession */
};

/* One subject attribute ("CN", "O", ... or a dotted OID), or one SAN ("dns", "ip", "email",
 * "uri", "other"). Values are UTF-8; IP addresses in text form. */
struct eg_csr_item {
	char type[32];
	char value[EG_CSR_VALUE_MAX];
};

struct eg_csr {
	char key_type[16];     /* "RSA", "RSA-PSS", "EC", "ED25519", "ED448", "DSA", or OpenSSL's name */
	int key_bits;          /* as OpenSSL reports it: RSA/DSA modulus, EC field size, 256 for Ed25519 */
	char curve[40];        /* EC: OpenSSL short name ("prime256v1", "brainpoolP384r1"); else "" */
	char signature_alg[48];/* e.g. "ecdsa-with-SHA256", "ED25519" */
	char subject_text[512];/* RFC 2253 form, for logs and audit */
	int nsubject;
	struct eg_csr_item subject[EG_CSR_MAX_ITEMS];
	int nsan;
	struct eg_csr_item san[EG_CSR_MAX_ITEMS];
	int nextensions;
	char extensions[EG_CSR_MAX_ITEMS][48]; /* requested extensions: short names or OIDs */
	int has_challenge_password;
	int requests_ca;       /* basicConstraints with cA TRUE requested */
	unsigned char *der;    /* the request exactly as received (decoded), for forwarding */
	size_t der_len;
};

/* Parse body (len bytes). On EG_CSR_OK, *out is allocated and filled (free with eg_csr_free);
 * otherwise *out is NULL and why holds a one-line reason fit for a 400 answer. */
enum eg_csr_status eg_csr_parse(const void *body, size_t len, struct eg_csr **out, char *why, size_t whylen);
void eg_csr_free(struct eg_csr *c);

/* The same description of a certificate (a device's TLS client certificate): key, subject and
 * SANs; extensions and der are left empty. NULL if x is NULL or its names are unusable. */
struct eg_csr *eg_csr_from_cert(X509 *x);

/* The same description of a certificate template (a CMP CRMF request): subject (may be NULL),
 * public key (NULL: key_type "none"), requested extensions (may be NULL). NULL with why set if
 * the names are unusable (the same limits as eg_csr_parse). der is left empty. */
struct eg_csr *eg_csr_from_template(const X509_NAME *subject, EVP_PKEY *pk,
				     const STACK_OF(X509_EXTENSION) *exts, char *why, size_t whylen);

/* The key of a SubjectPublicKeyInfo given as its two parts (a CRMF template's): built directly
 * for the key types policy accepts (as eg_csr_parse does), through OpenSSL's decoders for the
 * others. The caller frees it; NULL if it is not a usable key. */
EVP_PKEY *eg_csr_key_from_spki(X509_ALGOR *algorithm, ASN1_BIT_STRING *public_key);

/* Decode base64 with any ASCII whitespace between characters (RFC 8951 bodies). Returns the
 * decoded length, or -1 if src is not valid base64 or does not fit dstcap. */
long eg_base64_decode_ws(const char *src, size_t len, unsigned char *dst, size_t dstcap);

#endif
