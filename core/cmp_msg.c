/* cmp_msg.c: CMP message parsing, protection checks and error messages with OpenSSL; see
 * cmp_msg.h.
 *
 * OpenSSL 3.0 parses a PKIMessage (d2i_OSSL_CMP_MSG) and validates its protection
 * (OSSL_CMP_validate_msg), but keeps most header fields, the extraCerts and the parts of a CRMF
 * certificate template private, and offers no way to build a CMP message outside its own client
 * and server. So the same DER is decoded a second time with the small ASN.1 templates below
 * (written from the ASN.1 modules of RFC 4210 and RFC 4211), which also encode the error
 * messages. Both decoders are OpenSSL's; the fuzz target runs them on the same input. */
#include "cmp_msg.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/asn1t.h>
#include <openssl/crmf.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "csr.h"
#include "pbm.h"

/* ---- ASN.1 views (RFC 4210 is written with EXPLICIT TAGS, RFC 4211's CertTemplate IMPLICIT) ---- */

/* PKIHeader */
typedef struct {
	ASN1_INTEGER *pvno;
	GENERAL_NAME *sender;
	GENERAL_NAME *recipient;
	ASN1_GENERALIZEDTIME *message_time;
	X509_ALGOR *protection_alg;
	ASN1_OCTET_STRING *sender_kid;
	ASN1_OCTET_STRING *recip_kid;
	ASN1_OCTET_STRING *transaction_id;
	ASN1_OCTET_STRING *sender_nonce;
	ASN1_OCTET_STRING *recip_nonce;
	STACK_OF(ASN1_UTF8STRING) *free_text;
	STACK_OF(ASN1_TYPE) *general_info;
} EG_CMP_HDR;

ASN1_SEQUENCE(EG_CMP_HDR) = {
	ASN1_SIMPLE(EG_CMP_HDR, pvno, ASN1_INTEGER),
	ASN1_SIMPLE(EG_CMP_HDR, sender, GENERAL_NAME),
	ASN1_SIMPLE(EG_CMP_HDR, recipient, GENERAL_NAME),
	ASN1_EXP_OPT(EG_CMP_HDR, message_time, ASN1_GENERALIZEDTIME, 0),
	ASN1_EXP_OPT(EG_CMP_HDR, protection_alg, X509_ALGOR, 1),
	ASN1_EXP_OPT(EG_CMP_HDR, sender_kid, ASN1_OCTET_STRING, 2),
	ASN1_EXP_OPT(EG_CMP_HDR, recip_kid, ASN1_OCTET_STRING, 3),
	ASN1_EXP_OPT(EG_CMP_HDR, transaction_id, ASN1_OCTET_STRING, 4),
	ASN1_EXP_OPT(EG_CMP_HDR, sender_nonce, ASN1_OCTET_STRING, 5),
	ASN1_EXP_OPT(EG_CMP_HDR, recip_nonce, ASN1_OCTET_STRING, 6),
	ASN1_EXP_SEQUENCE_OF_OPT(EG_CMP_HDR, free_text, ASN1_UTF8STRING, 7),
	ASN1_EXP_SEQUENCE_OF_OPT(EG_CMP_HDR, general_info, ASN1_ANY, 8),
} static_ASN1_SEQUENCE_END(EG_CMP_HDR)

/* PKIMessage, with the body kept whole (its [n] tag and content) */
typedef struct eg_cmp_view {
	EG_CMP_HDR *header;
	ASN1_TYPE *body;
	ASN1_BIT_STRING *protection;
	STACK_OF(X509) *extra_certs;
} EG_CMP_VIEW;

ASN1_SEQUENCE(EG_CMP_VIEW) = {
	ASN1_SIMPLE(EG_CMP_VIEW, header, EG_CMP_HDR),
	ASN1_SIMPLE(EG_CMP_VIEW, body, ASN1_ANY),
	ASN1_EXP_OPT(EG_CMP_VIEW, protection, ASN1_BIT_STRING, 0),
	ASN1_EXP_SEQUENCE_OF_OPT(EG_CMP_VIEW, extra_certs, X509, 1),
} static_ASN1_SEQUENCE_END(EG_CMP_VIEW)

/* ErrorMsgContent, and a PKIMessage whose body is one (what we send: never protected) */
typedef struct {
	OSSL_CMP_PKISI *status;
	ASN1_INTEGER *error_code;
	STACK_OF(ASN1_UTF8STRING) *details;
} EG_CMP_ERR_CONTENT;

ASN1_SEQUENCE(EG_CMP_ERR_CONTENT) = {
	ASN1_SIMPLE(EG_CMP_ERR_CONTENT, status, OSSL_CMP_PKISI),
	ASN1_OPT(EG_CMP_ERR_CONTENT, error_code, ASN1_INTEGER),
	ASN1_SEQUENCE_OF_OPT(EG_CMP_ERR_CONTENT, details, ASN1_UTF8STRING),
} static_ASN1_SEQUENCE_END(EG_CMP_ERR_CONTENT)

typedef struct {
	EG_CMP_HDR *header;
	EG_CMP_ERR_CONTENT *error;
} EG_CMP_ERR_MSG;

ASN1_SEQUENCE(EG_CMP_ERR_MSG) = {
	ASN1_SIMPLE(EG_CMP_ERR_MSG, header, EG_CMP_HDR),
	ASN1_EXP(EG_CMP_ERR_MSG, error, EG_CMP_ERR_CONTENT, 23),
} static_ASN1_SEQUENCE_END(EG_CMP_ERR_MSG)

/* CertTemplate (RFC 4211 section 5): OpenSSL 3.0 has no getters for its key and extensions */
typedef struct {
	ASN1_TIME *not_before;
	ASN1_TIME *not_after;
} EG_CRMF_VALIDITY;

ASN1_SEQUENCE(EG_CRMF_VALIDITY) = {
	ASN1_EXP_OPT(EG_CRMF_VALIDITY, not_before, ASN1_TIME, 0),
	ASN1_EXP_OPT(EG_CRMF_VALIDITY, not_after, ASN1_TIME, 1),
} static_ASN1_SEQUENCE_END(EG_CRMF_VALIDITY)

/* SubjectPublicKeyInfo kept as its parts: csr.c builds the key (X509_PUBKEY would decode it
 * through OpenSSL 3.0's decoder set-up, a second time after d2i_OSSL_CMP_MSG) */
typedef struct {
	X509_ALGOR *algorithm;
	ASN1_BIT_STRING *public_key;
} EG_CRMF_SPKI;

ASN1_SEQUENCE(EG_CRMF_SPKI) = {
	ASN1_SIMPLE(EG_CRMF_SPKI, algorithm, X509_ALGOR),
	ASN1_SIMPLE(EG_CRMF_SPKI, public_key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(EG_CRMF_SPKI)

typedef struct {
	ASN1_INTEGER *version;
	ASN1_INTEGER *serial;
	X509_ALGOR *signing_alg;
	X509_NAME *issuer;
	EG_CRMF_VALIDITY *validity;
	X509_NAME *subject;
	EG_CRMF_SPKI *public_key;
	ASN1_BIT_STRING *issuer_uid;
	ASN1_BIT_STRING *subject_uid;
	STACK_OF(X509_EXTENSION) *extensions;
} EG_CRMF_TMPL;

ASN1_SEQUENCE(EG_CRMF_TMPL) = {
	ASN1_IMP_OPT(EG_CRMF_TMPL, version, ASN1_INTEGER, 0),
	ASN1_IMP_OPT(EG_CRMF_TMPL, serial, ASN1_INTEGER, 1),
	ASN1_IMP_OPT(EG_CRMF_TMPL, signing_alg, X509_ALGOR, 2),
	ASN1_EXP_OPT(EG_CRMF_TMPL, issuer, X509_NAME, 3),
	ASN1_IMP_OPT(EG_CRMF_TMPL, validity, EG_CRMF_VALIDITY, 4),
	ASN1_EXP_OPT(EG_CRMF_TMPL, subject, X509_NAME, 5),
	ASN1_IMP_OPT(EG_CRMF_TMPL, public_key, EG_CRMF_SPKI, 6),
	ASN1_IMP_OPT(EG_CRMF_TMPL, issuer_uid, ASN1_BIT_STRING, 7),
	ASN1_IMP_OPT(EG_CRMF_TMPL, subject_uid, ASN1_BIT_STRING, 8),
	ASN1_IMP_SEQUENCE_OF_OPT(EG_CRMF_TMPL, extensions, X509_EXTENSION, 9),
} static_ASN1_SEQUENCE_END(EG_CRMF_TMPL)

/* ---- helpers ---- */

static void set_text(char *out, size_t cap, const char *msg)
{
	if (out && cap)
		snprintf(out, cap, "%s", msg);
}

static const char *const type_names[EG_CMP_BODY_MAX + 1] = {
	"ir", "ip", "cr", "cp", "p10cr", "popdecc", "popdecr", "kur", "kup", "krr", "krp", "rr", "rp",
	"ccr", "ccp", "ckuann", "cann", "rann", "crlann", "pkiconf", "nested", "genm", "genp", "error",
	"certConf", "pollReq", "pollRep",
};

const char *eg_cmp_type_name(int body_type)
{
	return body_type >= 0 && body_type <= EG_CMP_BODY_MAX ? type_names[body_type] : "unknown";
}

int eg_cmp_peek_body_type(const void *der, size_t len)
{
	const unsigned char *p = der, *end = p + len;
	long n;
	int tag, cls;
	/* ASN1_get_object checks each length against what is left; 0x80 is its error bit */
	if (len > LONG_MAX || (ASN1_get_object(&p, &n, &tag, &cls, (long)len) & 0x80) || tag != V_ASN1_SEQUENCE ||
	    cls != V_ASN1_UNIVERSAL || p + n != end)
		return -1;
	const unsigned char *hdr = p;
	if ((ASN1_get_object(&p, &n, &tag, &cls, end - p) & 0x80) || tag != V_ASN1_SEQUENCE || cls != V_ASN1_UNIVERSAL)
		return -1;
	p += n;
	if (p <= hdr || p >= end)
		return -1;
	int ret = ASN1_get_object(&p, &n, &tag, &cls, end - p);
	if ((ret & 0x80) || !(ret & V_ASN1_CONSTRUCTED) || cls != V_ASN1_CONTEXT_SPECIFIC || tag > EG_CMP_BODY_MAX)
		return -1;
	return tag;
}

/* A copy of what the protection of the PKIMessage der covers, ProtectedPart ::= SEQUENCE
 * { header, body } (RFC 4210 section 5.1.3), from the header and body exactly as received: a
 * new SEQUENCE around them. Into m->protected_part; left NULL when a length is indefinite. */
static void keep_protected_part(struct eg_cmp_msg *m, const unsigned char *der, size_t len)
{
	const unsigned char *p = der, *end = der + len;
	long n;
	int tag, cls;
	if (len > LONG_MAX || ASN1_get_object(&p, &n, &tag, &cls, (long)len) != V_ASN1_CONSTRUCTED)
		return;
	const unsigned char *start = p;
	for (int i = 0; i < 2; i++) {   /* header, body: constructed, definite length */
		if (ASN1_get_object(&p, &n, &tag, &cls, end - p) != V_ASN1_CONSTRUCTED || n > end - p)
			return;
		p += n;
	}
	size_t span = (size_t)(p - start);
	if (span > INT_MAX)
		return;
	int hl = ASN1_object_size(1, (int)span, V_ASN1_SEQUENCE) - (int)span;
	unsigned char *pp = malloc((size_t)hl + span), *q = pp;
	if (!pp)
		return;
	ASN1_put_object(&q, 1, (int)span, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
	memcpy(q, start, span);
	m->protected_part = pp;
	m->protected_len = (size_t)hl + span;
}

int eg_cmp_type_by_name(const char *name)
{
	for (int i = 0; i <= EG_CMP_BODY_MAX; i++)
		if (strcmp(type_names[i], name) == 0)
			return i;
	return -1;
}

static const char *const failinfo_names[] = {
	"badAlg", "badMessageCheck", "badRequest", "badTime", "badCertId", "badDataFormat",
	"wrongAuthority", "incorrectData", "missingTimeStamp", "badPOP", "certRevoked", "certConfirmed",
	"wrongIntegrity", "badRecipientNonce", "timeNotAvailable", "unacceptedPolicy",
	"unacceptedExtension", "addInfoNotAvailable", "badSenderNonce", "badCertTemplate",
	"signerNotTrusted", "transactionIdInUse", "unsupportedVersion", "notAuthorized",
	"systemUnavail", "systemFailure", "duplicateCertReq",
};

int eg_cmp_failinfo_bit(const char *name)
{
	for (int i = 0; i < (int)(sizeof(failinfo_names) / sizeof(failinfo_names[0])); i++)
		if (strcmp(failinfo_names[i], name) == 0)
			return i;
	return -1;
}

/* A GeneralName as text: a directoryName in RFC 2253 form, other kinds as "<kind>". */
static void name_text(const GENERAL_NAME *g, char *out, size_t cap)
{
	out[0] = '\0';
	if (!g)
		return;
	int type;
	void *v = GENERAL_NAME_get0_value(g, &type);
	if (type != GEN_DIRNAME) {
		snprintf(out, cap, "<%s>", type == GEN_DNS ? "dNSName" : type == GEN_URI ? "uniformResourceIdentifier"
			 : type == GEN_EMAIL ? "rfc822Name" : type == GEN_IPADD ? "iPAddress" : "otherName");
		return;
	}
	BIO *b = BIO_new(BIO_s_mem());
	if (!b)
		return;
	X509_NAME_print_ex(b, v, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	int l = BIO_read(b, out, (int)cap - 1);
	out[l > 0 ? l : 0] = '\0';
	BIO_free(b);
}

static void hex_text(const ASN1_OCTET_STRING *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0;
	int len = s ? ASN1_STRING_length(s) : 0;
	const unsigned char *d = s ? ASN1_STRING_get0_data(s) : NULL;
	for (int i = 0; i < len && n + 2 < cap; i++) {
		out[n++] = hex[d[i] >> 4];
		out[n++] = hex[d[i] & 15];
	}
	out[n] = '\0';
}

/* senderKID as it is usually configured: the reference text when printable, else hex. */
static void kid_text(const ASN1_OCTET_STRING *s, char *out, size_t cap)
{
	int len = ASN1_STRING_length(s);
	const unsigned char *d = ASN1_STRING_get0_data(s);
	int printable = len > 0 && (size_t)len < cap;
	for (int i = 0; printable && i < len; i++)
		printable = d[i] >= 0x20 && d[i] < 0x7f;
	if (printable) {
		memcpy(out, d, (size_t)len);
		out[len] = '\0';
	} else {
		hex_text(s, out, cap);
	}
}

static void classify_protection(struct eg_cmp_msg *m, const X509_ALGOR *alg)
{
	if (!alg) {
		m->protection = EG_CMP_PROT_NONE;
		return;
	}
	const ASN1_OBJECT *oid;
	X509_ALGOR_get0(&oid, NULL, NULL, alg);
	int nid = OBJ_obj2nid(oid), md, pk;
	if (nid == NID_id_PasswordBasedMAC) {
		m->protection = EG_CMP_PROT_MAC;
		snprintf(m->protection_alg, sizeof(m->protection_alg), "PBM");
		return;
	}
	m->protection = nid != NID_undef && OBJ_find_sigid_algs(nid, &md, &pk) && pk != NID_undef
		      ? EG_CMP_PROT_SIGNATURE : EG_CMP_PROT_OTHER;
	if (nid != NID_undef)
		snprintf(m->protection_alg, sizeof(m->protection_alg), "%s", OBJ_nid2sn(nid));
	else if (OBJ_obj2txt(m->protection_alg, (int)sizeof(m->protection_alg), oid, 1) <= 0)
		snprintf(m->protection_alg, sizeof(m->protection_alg), "?");
}

static void content_error(struct eg_cmp_msg *m, const char *reason, const char *detail)
{
	for (int i = 0; i < m->nrequests; i++)
		eg_csr_free(m->requests[i]);
	m->nrequests = 0;
	m->content_error = reason;
	set_text(m->content_detail, sizeof(m->content_detail), detail);
}

static const unsigned char *body_content(const struct eg_cmp_msg *m, long *clen);

/* ir/cr/kur: describe each CertReqMsg's template. */
static void read_crmf(struct eg_cmp_msg *m, const unsigned char *p, long len)
{
	const unsigned char *q = p;
	OSSL_CRMF_MSGS *reqs = d2i_OSSL_CRMF_MSGS(NULL, &q, len);
	char why[160];
	if (!reqs || q != p + len) {
		content_error(m, "bad_template", "certificate request messages do not parse");
		goto out;
	}
	int n = sk_OSSL_CRMF_MSG_num(reqs);
	if (n < 1 || n > EG_CMP_MAX_REQUESTS) {
		content_error(m, "bad_template", n < 1 ? "no certificate request" : "too many certificate requests");
		goto out;
	}
	for (int i = 0; i < n; i++) {
		OSSL_CRMF_CERTTEMPLATE *tmpl = OSSL_CRMF_MSG_get0_tmpl(sk_OSSL_CRMF_MSG_value(reqs, i));
		unsigned char *der = NULL;
		int dl = tmpl ? i2d_OSSL_CRMF_CERTTEMPLATE(tmpl, &der) : -1;
		const unsigned char *d = der;
		EG_CRMF_TMPL *t = dl > 0 ? (EG_CRMF_TMPL *)ASN1_item_d2i(NULL, &d, dl, ASN1_ITEM_rptr(EG_CRMF_TMPL)) : NULL;
		OPENSSL_free(der);
		if (!t) {
			content_error(m, "bad_template", "certificate template does not parse");
			goto out;
		}
		EVP_PKEY *pk = t->public_key ? eg_csr_key_from_spki(t->public_key->algorithm, t->public_key->public_key)
					     : NULL;
		struct eg_csr *c = NULL;
		if (t->public_key && !pk)
			snprintf(why, sizeof(why), "public key in the template not supported");
		else
			c = eg_csr_from_template(t->subject, pk, t->extensions, why, sizeof(why));
		EVP_PKEY_free(pk);
		ASN1_item_free((ASN1_VALUE *)t, ASN1_ITEM_rptr(EG_CRMF_TMPL));
		if (!c) {
			content_error(m, "bad_template", why);
			goto out;
		}
		m->requests[m->nrequests++] = c;
	}
out:
	OSSL_CRMF_MSGS_free(reqs);
	ERR_clear_error();
}

/* p10cr: the PKCS#10 request, signature (proof of possession) included. */
static void read_p10(struct eg_cmp_msg *m, const unsigned char *p, long len)
{
	char why[160];
	struct eg_csr *c = NULL;
	enum eg_csr_status st = eg_csr_parse(p, (size_t)len, &c, why, sizeof(why));
	if (st == EG_CSR_OK)
		m->requests[m->nrequests++] = c;
	else
		content_error(m, st == EG_CSR_BAD_SIGNATURE ? "bad_pop" : "bad_template", why);
	ERR_clear_error();
}

enum eg_cmp_status eg_cmp_parse(const void *der, size_t len, struct eg_cmp_msg **out, char *why, size_t whylen)
{
	*out = NULL;
	if (len == 0) {
		set_text(why, whylen, "empty body");
		return EG_CMP_EMPTY;
	}
	if (len > EG_CMP_MAX_DER) {
		set_text(why, whylen, "message too large");
		return EG_CMP_TOO_LARGE;
	}
	struct eg_cmp_msg *m = calloc(1, sizeof(*m));
	if (!m) {
		set_text(why, whylen, "out of memory");
		return EG_CMP_TOO_LARGE;
	}
	const unsigned char *p = der;
	m->msg = d2i_OSSL_CMP_MSG(NULL, &p, (long)len);
	if (!m->msg || p != (const unsigned char *)der + len) {
		set_text(why, whylen, m->msg ? "trailing bytes after the PKIMessage" : "not a DER PKIMessage");
		goto bad;
	}
	p = der;
	m->view = (EG_CMP_VIEW *)ASN1_item_d2i(NULL, &p, (long)len, ASN1_ITEM_rptr(EG_CMP_VIEW));
	if (!m->view || p != (const unsigned char *)der + len) {
		set_text(why, whylen, "PKIMessage header not understood");
		goto bad;
	}
	EG_CMP_HDR *h = m->view->header;
	m->body_type = OSSL_CMP_MSG_get_bodytype(m->msg);
	long pvno = ASN1_INTEGER_get(h->pvno);
	m->pvno = pvno >= 1 && pvno <= 3 ? (int)pvno : 2;
	classify_protection(m, h->protection_alg);
	if (m->protection == EG_CMP_PROT_MAC)
		keep_protected_part(m, der, len);
	name_text(h->sender, m->sender, sizeof(m->sender));
	name_text(h->recipient, m->recipient, sizeof(m->recipient));
	if (h->sender_kid) {
		kid_text(h->sender_kid, m->sender_kid, sizeof(m->sender_kid));
		int kl = ASN1_STRING_length(h->sender_kid);
		if (kl > 0 && (size_t)kl <= sizeof(m->kid)) {
			memcpy(m->kid, ASN1_STRING_get0_data(h->sender_kid), (size_t)kl);
			m->kid_len = (size_t)kl;
		}
	}
	hex_text(h->transaction_id, m->transaction_id, sizeof(m->transaction_id));
	m->nextra_certs = m->view->extra_certs ? sk_X509_num(m->view->extra_certs) : 0;

	if (m->body_type == EG_CMP_IR || m->body_type == EG_CMP_CR || m->body_type == EG_CMP_KUR ||
	    m->body_type == EG_CMP_P10CR) {
		long clen = 0;
		const unsigned char *c = body_content(m, &clen);
		if (!c) {
			content_error(m, "bad_template", "message body not understood");
		} else if (m->body_type == EG_CMP_P10CR) {
			read_p10(m, c, clen);
		} else {
			read_crmf(m, c, clen);
		}
	}
	ERR_clear_error();
	*out = m;
	return EG_CMP_OK;
bad:
	eg_cmp_msg_free(m);
	ERR_clear_error();
	return EG_CMP_BAD_DER;
}

void eg_cmp_msg_free(struct eg_cmp_msg *m)
{
	if (!m)
		return;
	OSSL_CMP_MSG_free(m->msg);
	ASN1_item_free((ASN1_VALUE *)m->view, ASN1_ITEM_rptr(EG_CMP_VIEW));
	for (int i = 0; i < m->nrequests; i++)
		eg_csr_free(m->requests[i]);
	free(m->protected_part);
	free(m);
}

/* ---- protection ---- */

/* OpenSSL's CMP code logs through its context; we report reasons ourselves. */
static int quiet_log(const char *func, const char *file, int line, OSSL_CMP_severity level, const char *msg)
{
	(void)func, (void)file, (void)line, (void)level, (void)msg;
	return 1;
}

static OSSL_CMP_CTX *check_ctx(void)
{
	/* A new context per check: OpenSSL remembers a validated sender certificate in it and
	 * would skip the path (and revocation) check for the next message from that sender. */
	OSSL_CMP_CTX *ctx = OSSL_CMP_CTX_new(NULL, NULL);
	if (ctx) {
		OSSL_CMP_CTX_set_log_cb(ctx, quiet_log);
		OSSL_CMP_CTX_set_log_verbosity(ctx, OSSL_CMP_LOG_EMERG);
	}
	return ctx;
}

int eg_cmp_pbm_fast(const struct eg_cmp_msg *m, const unsigned char *secret, size_t len)
{
	const X509_ALGOR *alg = m->view->header->protection_alg;
	const ASN1_BIT_STRING *prot = m->view->protection;
	if (!m->protected_part || !prot || !alg || !alg->parameter || alg->parameter->type != V_ASN1_SEQUENCE)
		return -1;
	const ASN1_STRING *param = alg->parameter->value.sequence;
	return eg_pbm_verify(ASN1_STRING_get0_data(param), (size_t)ASN1_STRING_length(param), secret, len,
			     m->protected_part, m->protected_len, ASN1_STRING_get0_data(prot),
			     (size_t)ASN1_STRING_length(prot));
}

const char *eg_cmp_check_mac(const struct eg_cmp_msg *m, const unsigned char *secret, size_t len,
			     char *detail, size_t cap)
{
	if (m->protection != EG_CMP_PROT_MAC) {
		set_text(detail, cap, "message is not MAC-protected");
		return "wrong_protection";
	}
	/* The fast path decides only a match; anything else is OpenSSL's to decide */
	if (eg_cmp_pbm_fast(m, secret, len) == 1)
		return NULL;
	OSSL_CMP_CTX *ctx = check_ctx();
	int ok = ctx && OSSL_CMP_CTX_set1_secretValue(ctx, secret, (int)len) && OSSL_CMP_validate_msg(ctx, m->msg) == 1;
	OSSL_CMP_CTX_free(ctx);
	ERR_clear_error();
	if (ok)
		return NULL;
	snprintf(detail, cap, "MAC does not verify with the secret of keyId '%s'", m->sender_kid);
	return "mac_failed";
}

/* The first certificate path error of the current check (X509_STORE verify callback). */
static _Thread_local int verify_error;

static int record_verify_error(int ok, X509_STORE_CTX *sctx)
{
	if (!ok && verify_error == 0)
		verify_error = X509_STORE_CTX_get_error(sctx);
	return ok;
}

/* The extraCerts entry that names the sender (and has senderKID as its key identifier). */
static X509 *signer_cert(const struct eg_cmp_msg *m)
{
	const GENERAL_NAME *g = m->view->header->sender;
	int type;
	const X509_NAME *sender = g ? GENERAL_NAME_get0_value(g, &type) : NULL;
	if (!sender || type != GEN_DIRNAME)
		return NULL;
	for (int i = 0; i < m->nextra_certs; i++) {
		X509 *x = sk_X509_value(m->view->extra_certs, i);
		if (X509_NAME_cmp(X509_get_subject_name(x), sender) != 0)
			continue;
		const ASN1_OCTET_STRING *skid = X509_get0_subject_key_id(x);
		if (m->view->header->sender_kid && (!skid || ASN1_OCTET_STRING_cmp(skid, m->view->header->sender_kid) != 0))
			continue;
		return x;
	}
	return NULL;
}

struct eg_csr *eg_cmp_signer(const struct eg_cmp_msg *m)
{
	return eg_csr_from_cert(signer_cert(m));
}

const char *eg_cmp_check_signature(const struct eg_cmp_msg *m, X509_STORE *trusted, char *detail, size_t cap)
{
	if (m->protection != EG_CMP_PROT_SIGNATURE) {
		set_text(detail, cap, "message is not signature-protected");
		return "wrong_protection";
	}
	if (!trusted) {
		set_text(detail, cap, "no issuers configured for signature-protected messages");
		return "no_chains";
	}
	if (!signer_cert(m)) {
		set_text(detail, cap, m->nextra_certs ? "no certificate in extraCerts names the sender"
						      : "no signer certificate in extraCerts");
		return "signature_no_cert";
	}
	OSSL_CMP_CTX *ctx = check_ctx();
	verify_error = 0;
	int ok = ctx && X509_STORE_up_ref(trusted);
	if (ok && !OSSL_CMP_CTX_set0_trustedStore(ctx, trusted)) {
		X509_STORE_free(trusted);
		ok = 0;
	}
	/* intermediate CAs may come in extraCerts */
	ok = ok && OSSL_CMP_CTX_set1_untrusted(ctx, m->view->extra_certs);
	ok = ok && OSSL_CMP_validate_msg(ctx, m->msg) == 1;
	OSSL_CMP_CTX_free(ctx);
	ERR_clear_error();
	int err = verify_error;
	if (ok)
		return NULL;
	if (err == 0) {
		set_text(detail, cap, "signature does not verify with the signer's certificate");
		return "signature_failed";
	}
	snprintf(detail, cap, "signer certificate: %s", X509_verify_cert_error_string(err));
	switch (err) {
	case X509_V_ERR_CERT_REVOKED:
		return "signer_revoked";
	case X509_V_ERR_UNABLE_TO_GET_CRL:
	case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
	case X509_V_ERR_CRL_HAS_EXPIRED:
	case X509_V_ERR_CRL_NOT_YET_VALID:
	case X509_V_ERR_CRL_SIGNATURE_FAILURE:
	case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
	case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
	case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
	case X509_V_ERR_DIFFERENT_CRL_SCOPE:
	case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
	case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
		return "revocation_unknown";
	default:
		return "signer_untrusted";
	}
}

/* Add every certificate and CRL of the PEM file path to st; the number added, or -1. */
static int load_pem_file(X509_STORE *st, const char *path, int want_crls, char *why, size_t whylen)
{
	BIO *b = BIO_new_file(path, "r");
	if (!b) {
		snprintf(why, whylen, "%s: cannot open", path);
		return -1;
	}
	STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(b, NULL, NULL, NULL);
	BIO_free(b);
	if (!infos) {
		snprintf(why, whylen, "%s: not PEM", path);
		ERR_clear_error();
		return -1;
	}
	int n = 0, rc = 0;
	for (int i = 0; i < sk_X509_INFO_num(infos) && rc == 0; i++) {
		X509_INFO *in = sk_X509_INFO_value(infos, i);
		if (in->x509 && !want_crls) {
			rc = X509_STORE_add_cert(st, in->x509) ? 0 : -1;
			n++;
		}
		if (in->crl && want_crls) {
			rc = X509_STORE_add_crl(st, in->crl) ? 0 : -1;
			n++;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	ERR_clear_error();
	if (rc < 0) {
		snprintf(why, whylen, "%s: cannot add to the trust store", path);
		return -1;
	}
	return n;
}

/* A PEM file, or every regular file (not dot-files) in a directory. Total added, or -1. */
static int load_pem_path(X509_STORE *st, const char *path, int want_crls, char *why, size_t whylen)
{
	struct stat sb;
	if (stat(path, &sb) != 0) {
		snprintf(why, whylen, "%s: not found", path);
		return -1;
	}
	if (!S_ISDIR(sb.st_mode))
		return load_pem_file(st, path, want_crls, why, whylen);
	DIR *d = opendir(path);
	if (!d) {
		snprintf(why, whylen, "%s: cannot read the directory", path);
		return -1;
	}
	int total = 0;
	struct dirent *e;
	char file[4096];
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		if (stat(file, &sb) != 0 || !S_ISREG(sb.st_mode))
			continue;
		int n = load_pem_file(st, file, want_crls, why, whylen);
		if (n < 0) {
			total = -1;
			break;
		}
		total += n;
	}
	closedir(d);
	return total;
}

X509_STORE *eg_cmp_trust_store(const char *issuers, const char *crls, char *why, size_t whylen)
{
	X509_STORE *st = X509_STORE_new();
	if (!st) {
		set_text(why, whylen, "out of memory");
		return NULL;
	}
	int n = load_pem_path(st, issuers, 0, why, whylen);
	if (n == 0)
		snprintf(why, whylen, "%s: no certificates", issuers);
	if (n <= 0)
		goto fail;
	if (crls) {
		/* no CRL yet (a path that does not exist, an empty directory) is not an error here:
		 * every signer is then of unknown revocation status until one arrives */
		struct stat sb;
		if (stat(crls, &sb) == 0 && load_pem_path(st, crls, 1, why, whylen) < 0)
			goto fail;
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	X509_STORE_set_verify_cb(st, record_verify_error);
	return st;
fail:
	X509_STORE_free(st);
	return NULL;
}

/* ---- error messages ---- */

/* The content of the body [n] { content } as received; NULL if the tag is not n. */
static const unsigned char *body_content(const struct eg_cmp_msg *m, long *clen)
{
	ASN1_TYPE *b = m->view->body;
	const unsigned char *bp = b && b->type == V_ASN1_OTHER ? ASN1_STRING_get0_data(b->value.asn1_string) : NULL;
	long blen = bp ? ASN1_STRING_length(b->value.asn1_string) : 0;
	int tag = -1, xclass = 0;
	const unsigned char *c = bp;
	if (!bp || (ASN1_get_object(&c, clen, &tag, &xclass, blen) & 0x80) ||
	    xclass != V_ASN1_CONTEXT_SPECIFIC || tag != m->body_type || c + *clen != bp + blen) {
		ERR_clear_error();
		return NULL;
	}
	return c;
}

int eg_cmp_error_text(const struct eg_cmp_msg *m, char *out, size_t cap)
{
	long clen = 0;
	const unsigned char *c = m->body_type == EG_CMP_ERROR ? body_content(m, &clen) : NULL;
	EG_CMP_ERR_CONTENT *e = c ? (EG_CMP_ERR_CONTENT *)ASN1_item_d2i(NULL, &c, clen, ASN1_ITEM_rptr(EG_CMP_ERR_CONTENT)) : NULL;
	int rc = e && OSSL_CMP_snprint_PKIStatusInfo(e->status, out, cap) ? 0 : -1;
	ASN1_item_free((ASN1_VALUE *)e, ASN1_ITEM_rptr(EG_CMP_ERR_CONTENT));
	ERR_clear_error();
	return rc;
}

static GENERAL_NAME *null_dn(void)
{
	GENERAL_NAME *g = GENERAL_NAME_new();
	X509_NAME *n = X509_NAME_new();
	if (!g || !n) {
		GENERAL_NAME_free(g);
		X509_NAME_free(n);
		return NULL;
	}
	GENERAL_NAME_set0_value(g, GEN_DIRNAME, n);
	return g;
}

unsigned char *eg_cmp_error_der(const struct eg_cmp_msg *m, int failinfo_bit, const char *text, size_t *len)
{
	const EG_CMP_HDR *rq = m ? m->view->header : NULL;
	EG_CMP_ERR_MSG *e = (EG_CMP_ERR_MSG *)ASN1_item_new(ASN1_ITEM_rptr(EG_CMP_ERR_MSG));
	unsigned char *der = NULL, nonce[16];
	int ok = e != NULL;
	if (ok) {
		EG_CMP_HDR *h = e->header;
		GENERAL_NAME_free(h->sender);
		GENERAL_NAME_free(h->recipient);
		h->sender = rq ? GENERAL_NAME_dup(rq->recipient) : null_dn();
		h->recipient = rq ? GENERAL_NAME_dup(rq->sender) : null_dn();
		h->message_time = ASN1_GENERALIZEDTIME_set(NULL, time(NULL));
		h->sender_nonce = ASN1_OCTET_STRING_new();
		ok = ASN1_INTEGER_set(h->pvno, m ? m->pvno : 2) && h->sender && h->recipient && h->message_time &&
		     h->sender_nonce && RAND_bytes(nonce, sizeof(nonce)) == 1 &&
		     ASN1_OCTET_STRING_set(h->sender_nonce, nonce, sizeof(nonce));
		if (ok && rq && rq->transaction_id)
			ok = (h->transaction_id = ASN1_OCTET_STRING_dup(rq->transaction_id)) != NULL;
		if (ok && rq && rq->sender_nonce)
			ok = (h->recip_nonce = ASN1_OCTET_STRING_dup(rq->sender_nonce)) != NULL;
	}
	if (ok) {
		int bit = failinfo_bit >= 0 && failinfo_bit <= OSSL_CMP_PKIFAILUREINFO_MAX ? failinfo_bit
			: OSSL_CMP_PKIFAILUREINFO_badRequest;
		OSSL_CMP_PKISI_free(e->error->status);
		e->error->status = OSSL_CMP_STATUSINFO_new(OSSL_CMP_PKISTATUS_rejection, 1 << bit, text && *text ? text : NULL);
		ok = e->error->status != NULL;
	}
	int n = ok ? ASN1_item_i2d((ASN1_VALUE *)e, &der, ASN1_ITEM_rptr(EG_CMP_ERR_MSG)) : -1;
	ASN1_item_free((ASN1_VALUE *)e, ASN1_ITEM_rptr(EG_CMP_ERR_MSG));
	ERR_clear_error();
	if (n <= 0) {
		OPENSSL_free(der);
		return NULL;
	}
	*len = (size_t)n;
	return der;
}
