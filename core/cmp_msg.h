/* cmp_msg.h: CMP PKIMessages (RFC 4210, RFC 9480; HTTP transfer RFC 6712) as the CMP proxy
 * receives them. Parsed with OpenSSL into an immutable description that policy decides on
 * (message type, sender, keyId, transactionID, the requested certificate templates in the same
 * form as EST's PKCS#10 description); protection checked with OpenSSL (password-based MAC, or a
 * signature whose signer chains to configured issuers, with CRLs); and CMP error messages built
 * the way a CA answers a request it rejects. */
#ifndef EG_CMP_MSG_H
#define EG_CMP_MSG_H

#include <stddef.h>

#include <openssl/cmp.h>
#include <openssl/x509.h>

struct eg_csr;

#define EG_CMP_MAX_DER (256 * 1024)  /* larger bodies are refused before decoding */
#define EG_CMP_MAX_REQUESTS 8        /* certificate requests in one ir/cr/kur (more: refused) */

/* PKIBody choice numbers (RFC 4210 section 5.1.2; OpenSSL 3.0 does not export its own). */
enum eg_cmp_body {
	EG_CMP_IR = 0, EG_CMP_IP, EG_CMP_CR, EG_CMP_CP, EG_CMP_P10CR, EG_CMP_POPDECC, EG_CMP_POPDECR,
	EG_CMP_KUR, EG_CMP_KUP, EG_CMP_KRR, EG_CMP_KRP, EG_CMP_RR, EG_CMP_RP, EG_CMP_CCR, EG_CMP_CCP,
	EG_CMP_CKUANN, EG_CMP_CANN, EG_CMP_RANN, EG_CMP_CRLANN, EG_CMP_PKICONF, EG_CMP_NESTED,
	EG_CMP_GENM, EG_CMP_GENP, EG_CMP_ERROR, EG_CMP_CERTCONF, EG_CMP_POLLREQ, EG_CMP_POLLREP,
	EG_CMP_BODY_MAX = EG_CMP_POLLREP
};

enum eg_cmp_protection {
	EG_CMP_PROT_NONE = 0,    /* no protectionAlg (an unprotected message) */
	EG_CMP_PROT_MAC,         /* password-based MAC (id-PasswordBasedMac) */
	EG_CMP_PROT_SIGNATURE,   /* a signature algorithm */
	EG_CMP_PROT_OTHER,       /* DH-based MAC, PBMAC1, KEM, or unknown: not checkable here */
};

enum eg_cmp_status {
	EG_CMP_OK = 0,
	EG_CMP_EMPTY,            /* no body */
	EG_CMP_TOO_LARGE,        /* over EG_CMP_MAX_DER */
	EG_CMP_BAD_DER,          /* not a DER PKIMessage */
};

struct eg_cmp_view;

struct eg_cmp_msg {
	OSSL_CMP_MSG *msg;               /* OpenSSL's parse; protection checks run on it */
	struct eg_cmp_view *view;        /* our decode of the same bytes (header fields, extraCerts) */
	int body_type;                   /* enum eg_cmp_body */
	int pvno;
	enum eg_cmp_protection protection;
	char protection_alg[64];         /* "PBM", "ecdsa-with-SHA256", a dotted OID, or "" */
	char sender[512];                /* directoryName in RFC 2253 text ("" for the NULL-DN) */
	char recipient[512];
	char sender_kid[129];            /* senderKID: as text when printable, else hex; "" if absent */
	unsigned char kid[64];           /* senderKID bytes (MAC key lookup); kid_len 0 if absent */
	size_t kid_len;
	char transaction_id[129];        /* hex; "" if absent */
	int nextra_certs;
	/* Certificate requests the body carries: ir/cr/kur templates, the p10cr request. A body
	 * whose requests cannot be described leaves nrequests 0 and sets content_error. */
	int nrequests;
	struct eg_csr *requests[EG_CMP_MAX_REQUESTS];
	const char *content_error;       /* NULL, or a reason ("bad_template", "bad_pop") */
	char content_detail[160];        /* a one-line detail for content_error */
	/* MAC-protected messages: the DER of ProtectedPart (SEQUENCE { header, body }) exactly as
	 * received, for the fast PBM check (core/pbm.h); NULL when the encoding is not definite-length */
	unsigned char *protected_part;
	size_t protected_len;
};

/* Parse body (len bytes of DER). On EG_CMP_OK *out is allocated (free with eg_cmp_msg_free);
 * otherwise *out is NULL and why holds a one-line reason. A well-formed message whose request
 * content is unusable still parses: see content_error. */
enum eg_cmp_status eg_cmp_parse(const void *der, size_t len, struct eg_cmp_msg **out, char *why, size_t whylen);
void eg_cmp_msg_free(struct eg_cmp_msg *m);

/* The body type of a DER PKIMessage read from its outer structure only (SEQUENCE { header
 * SEQUENCE, body [n] ... } filling exactly len bytes), without decoding it: n, or -1 when the
 * bytes do not have that shape. For the audit record of a CA's answer, which is relayed as is. */
int eg_cmp_peek_body_type(const void *der, size_t len);

/* "ir", "cr", "p10cr", ... for a body type; "unknown" outside the range. */
const char *eg_cmp_type_name(int body_type);

/* The body type named name, or -1. */
int eg_cmp_type_by_name(const char *name);

/* Protection checks. Each returns NULL when the protection verifies, or the internal reason
 * (a static string the error-mapping module knows) with a one-line detail:
 *   "mac_failed"           the MAC does not verify with secret
 *   "signature_no_cert"    no certificate in extraCerts that could be the signer
 *   "signature_failed"     the signature does not verify with the signer's certificate
 *   "signer_untrusted"     the signer does not chain to the configured issuers
 *   "signer_revoked"       the signer (or a CA on its path) is revoked
 *   "revocation_unknown"   a CRL needed is missing, stale or unusable
 *   "no_chains"            trusted is NULL: no issuers configured
 *   "wrong_protection"     the message is not protected that way */
const char *eg_cmp_check_mac(const struct eg_cmp_msg *m, const unsigned char *secret, size_t len,
			     char *detail, size_t cap);
const char *eg_cmp_check_signature(const struct eg_cmp_msg *m, X509_STORE *trusted, char *detail, size_t cap);

/* eg_cmp_check_mac's fast path: the PBM of m's ProtectedPart with core/pbm.c. 1: it verifies;
 * 0: it does not; -1: not decided there (not PBM, an indefinite length, other algorithms).
 * eg_cmp_check_mac accepts on 1 and leaves everything else to OSSL_CMP_validate_msg. */
int eg_cmp_pbm_fast(const struct eg_cmp_msg *m, const unsigned char *secret, size_t len);

/* The signer's certificate as a description (for policy and audit): the extraCerts entry whose
 * subject is the sender (and whose subjectKeyIdentifier is the senderKID, if given), or NULL. */
struct eg_csr *eg_cmp_signer(const struct eg_cmp_msg *m);

/* A trust store for signature checks: issuers from a PEM file or a directory of PEM files,
 * CRLs likewise (crls NULL: no revocation check). Revocation is checked for the whole path
 * when CRLs are configured; a crls path that does not exist yet, or holds no CRL, makes every
 * signer's status unknown ("revocation_unknown"). NULL with why set on error. */
X509_STORE *eg_cmp_trust_store(const char *issuers, const char *crls, char *why, size_t whylen);

/* The PKIStatusInfo of an error message as OpenSSL prints it ("PKIStatus: rejection;
 * PKIFailureInfo: badRequest; StatusString: ..."), for logs and audit. 0, or -1 if m is not
 * an error message or its content does not parse. */
int eg_cmp_error_text(const struct eg_cmp_msg *m, char *out, size_t cap);

/* failInfo bit of a name ("badRequest", "systemUnavail", ...), or -1. */
int eg_cmp_failinfo_bit(const char *name);

/* An unprotected CMP error message answering m, as DER (free with OPENSSL_free): header with
 * m's pvno, sender = m's recipient, recipient = m's sender, messageTime now, m's transactionID,
 * a fresh senderNonce and recipNonce = m's senderNonce (RFC 4210 section 5.1.1); body error with
 * PKIStatusInfo rejection, the failInfo bit and text as statusString. m may be NULL (a body
 * that did not parse): NULL-DN names, no transactionID. NULL on allocation failure. */
unsigned char *eg_cmp_error_der(const struct eg_cmp_msg *m, int failinfo_bit, const char *text, size_t *len);

#endif
