/* certs_only.c: EST's certs-only PKCS#7 answers, read with OpenSSL's ASN.1 templates but with
 * each certificate's SubjectPublicKeyInfo read as algorithm + BIT STRING, never as a key.
 *
 * Why not d2i_PKCS7: it decodes every certificate as an X509, and OpenSSL 3.0 decodes each
 * public key through its decoder framework (OSSL_DECODER_CTX_new_for_pkey), which costs more than
 * the whole rest of relaying an enrollment (docs/performance.md). The relay only needs to know
 * that the answer is a well-formed certs-only PKCS#7 (a malformed one is a 502, never a success)
 * and the first certificate's subject, serial and notAfter for the audit record; the device
 * verifies what it receives. `enrollgate test-upstream`, which prints the chain with
 * fingerprints, still uses d2i_PKCS7. */
#include "certs_only.h"

#include <stdio.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>

typedef struct {
	ASN1_TIME *not_before;
	ASN1_TIME *not_after;
} EG_VALIDITY;

ASN1_SEQUENCE(EG_VALIDITY) = {
	ASN1_SIMPLE(EG_VALIDITY, not_before, ASN1_TIME),
	ASN1_SIMPLE(EG_VALIDITY, not_after, ASN1_TIME),
} static_ASN1_SEQUENCE_END(EG_VALIDITY)

/* SubjectPublicKeyInfo as a plain structure: X509_PUBKEY would decode the key */
typedef struct {
	X509_ALGOR *algorithm;
	ASN1_BIT_STRING *key;
} EG_SPKI;

ASN1_SEQUENCE(EG_SPKI) = {
	ASN1_SIMPLE(EG_SPKI, algorithm, X509_ALGOR),
	ASN1_SIMPLE(EG_SPKI, key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(EG_SPKI)

/* TBSCertificate (RFC 5280 section 4.1) */
typedef struct {
	ASN1_INTEGER *version;
	ASN1_INTEGER *serial;
	X509_ALGOR *signature;
	X509_NAME *issuer;
	EG_VALIDITY *validity;
	X509_NAME *subject;
	EG_SPKI *spki;
	ASN1_BIT_STRING *issuer_uid;
	ASN1_BIT_STRING *subject_uid;
	STACK_OF(X509_EXTENSION) *extensions;
} EG_TBS;

ASN1_SEQUENCE(EG_TBS) = {
	ASN1_EXP_OPT(EG_TBS, version, ASN1_INTEGER, 0),
	ASN1_SIMPLE(EG_TBS, serial, ASN1_INTEGER),
	ASN1_SIMPLE(EG_TBS, signature, X509_ALGOR),
	ASN1_SIMPLE(EG_TBS, issuer, X509_NAME),
	ASN1_SIMPLE(EG_TBS, validity, EG_VALIDITY),
	ASN1_SIMPLE(EG_TBS, subject, X509_NAME),
	ASN1_SIMPLE(EG_TBS, spki, EG_SPKI),
	ASN1_IMP_OPT(EG_TBS, issuer_uid, ASN1_BIT_STRING, 1),
	ASN1_IMP_OPT(EG_TBS, subject_uid, ASN1_BIT_STRING, 2),
	ASN1_EXP_SEQUENCE_OF_OPT(EG_TBS, extensions, X509_EXTENSION, 3),
} static_ASN1_SEQUENCE_END(EG_TBS)

typedef struct {
	EG_TBS *tbs;
	X509_ALGOR *sig_alg;
	ASN1_BIT_STRING *signature;
} EG_CERT;

ASN1_SEQUENCE(EG_CERT) = {
	ASN1_SIMPLE(EG_CERT, tbs, EG_TBS),
	ASN1_SIMPLE(EG_CERT, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(EG_CERT, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(EG_CERT)

DEFINE_STACK_OF(EG_CERT)

/* EncapsulatedContentInfo (empty in a certs-only answer) */
typedef struct {
	ASN1_OBJECT *type;
	ASN1_TYPE *content;
} EG_ENCAP;

ASN1_SEQUENCE(EG_ENCAP) = {
	ASN1_SIMPLE(EG_ENCAP, type, ASN1_OBJECT),
	ASN1_EXP_OPT(EG_ENCAP, content, ASN1_ANY, 0),
} static_ASN1_SEQUENCE_END(EG_ENCAP)

/* SignedData (RFC 5652 section 5.1), with OpenSSL's own types where they decode no key */
typedef struct {
	ASN1_INTEGER *version;
	STACK_OF(X509_ALGOR) *digest_algs;
	EG_ENCAP *content;
	STACK_OF(EG_CERT) *certs;
	STACK_OF(X509_CRL) *crls;
	STACK_OF(PKCS7_SIGNER_INFO) *signer_infos;
} EG_SIGNED;

ASN1_SEQUENCE(EG_SIGNED) = {
	ASN1_SIMPLE(EG_SIGNED, version, ASN1_INTEGER),
	ASN1_SET_OF(EG_SIGNED, digest_algs, X509_ALGOR),
	ASN1_SIMPLE(EG_SIGNED, content, EG_ENCAP),
	ASN1_IMP_SET_OF_OPT(EG_SIGNED, certs, EG_CERT, 0),
	ASN1_IMP_SET_OF_OPT(EG_SIGNED, crls, X509_CRL, 1),
	ASN1_SET_OF(EG_SIGNED, signer_infos, PKCS7_SIGNER_INFO),
} static_ASN1_SEQUENCE_END(EG_SIGNED)

typedef struct {
	ASN1_OBJECT *type;
	EG_SIGNED *signed_data;
} EG_CONTENT_INFO;

ASN1_SEQUENCE(EG_CONTENT_INFO) = {
	ASN1_SIMPLE(EG_CONTENT_INFO, type, ASN1_OBJECT),
	ASN1_EXP(EG_CONTENT_INFO, signed_data, EG_SIGNED, 0),
} static_ASN1_SEQUENCE_END(EG_CONTENT_INFO)

/* Subject, serial and notAfter of one certificate, in the audit record's forms. */
static int describe(const EG_CERT *c, struct eg_certs_only *out)
{
	int ok = 0;
	BIO *b = BIO_new(BIO_s_mem());
	BIGNUM *bn = ASN1_INTEGER_to_BN(c->tbs->serial, NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	if (b && hex && X509_NAME_print_ex(b, c->tbs->subject, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
		int n = BIO_read(b, out->subject, (int)sizeof(out->subject) - 1);
		out->subject[n > 0 ? n : 0] = '\0';
		snprintf(out->serial, sizeof(out->serial), "%s", hex);
		(void)BIO_reset(b);
		if (ASN1_TIME_print(b, c->tbs->validity->not_after)) {
			n = BIO_read(b, out->not_after, (int)sizeof(out->not_after) - 1);
			out->not_after[n > 0 ? n : 0] = '\0';
			ok = 1;
		}
	}
	OPENSSL_free(hex);
	BN_free(bn);
	BIO_free(b);
	return ok ? 0 : -1;
}

int eg_certs_only_read(const unsigned char *der, size_t len, struct eg_certs_only *out)
{
	memset(out, 0, sizeof(*out));
	if (len == 0 || len > 0x7fffffff)
		return -1;
	const unsigned char *p = der;
	EG_CONTENT_INFO *ci = (EG_CONTENT_INFO *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(EG_CONTENT_INFO));
	int rc = -1;
	if (!ci || p != der + len || OBJ_obj2nid(ci->type) != NID_pkcs7_signed)
		goto done;
	const STACK_OF(EG_CERT) *certs = ci->signed_data->certs;
	int n = certs ? sk_EG_CERT_num(certs) : 0;
	if (n < 1 || n > EG_CERTS_ONLY_MAX_CERTS)
		goto done;
	out->ncerts = n;
	rc = describe(sk_EG_CERT_value(certs, 0), out);
done:
	ASN1_item_free((ASN1_VALUE *)ci, ASN1_ITEM_rptr(EG_CONTENT_INFO));
	ERR_clear_error();
	return rc;
}
