/* csr.c: PKCS#10 parsing and proof-of-possession check with OpenSSL; see csr.h. */
#include "csr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static int is_b64_space(unsigned char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\f' || ch == '\v';
}

static int b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

long eg_base64_decode_ws(const char *src, size_t len, unsigned char *dst, size_t dstcap)
{
	unsigned int acc = 0;
	int bits = 0, pad = 0;
	size_t n = 0, chars = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)src[i];
		if (is_b64_space(ch))
			continue;
		if (ch == '=') {
			pad++;
			chars++;
			continue;
		}
		int v = b64_value(ch);
		if (v < 0 || pad)
			return -1; /* not base64, or data after padding */
		acc = (acc << 6) | (unsigned int)v;
		bits += 6;
		chars++;
		if (bits >= 8) {
			bits -= 8;
			if (n >= dstcap)
				return -1;
			dst[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	/* whole quantums only: padding completes the last one, and the bits left over are zero */
	if (chars == 0 || pad > 2 || chars % 4 != 0 || (pad && bits != pad * 2) || acc != 0)
		return -1;
	return (long)n;
}

static void set_why(char *why, size_t whylen, const char *msg)
{
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
}

/* Copies an ASN1 string as UTF-8 into out; -1 if it is longer than out or holds a NUL. */
static int asn1_text(const ASN1_STRING *s, char *out, size_t cap)
{
	unsigned char *u = NULL;
	int n = ASN1_STRING_to_UTF8(&u, s);
	if (n < 0)
		return -1;
	int ok = (size_t)n < cap && memchr(u, 0, (size_t)n) == NULL;
	if (ok) {
		memcpy(out, u, (size_t)n);
		out[n] = '\0';
	}
	OPENSSL_free(u);
	return ok ? 0 : -1;
}

static void obj_name(const ASN1_OBJECT *o, char *out, size_t cap)
{
	int nid = OBJ_obj2nid(o);
	const char *sn = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
	if (sn)
		snprintf(out, cap, "%s", sn);
	else if (OBJ_obj2txt(out, (int)cap, o, 1) <= 0)
		snprintf(out, cap, "?");
}

static int add_san(struct eg_csr *c, const GENERAL_NAME *g)
{
	if (c->nsan >= EG_CSR_MAX_ITEMS)
		return -1;
	struct eg_csr_item *it = &c->san[c->nsan];
	int type;
	const ASN1_STRING *s = GENERAL_NAME_get0_value(g, &type);
	switch (type) {
	case GEN_DNS:
	case GEN_EMAIL:
	case GEN_URI:
		snprintf(it->type, sizeof(it->type), "%s", type == GEN_DNS ? "dns" : type == GEN_EMAIL ? "email" : "uri");
		if (ASN1_STRING_length(s) >= (int)sizeof(it->value) ||
		    memchr(ASN1_STRING_get0_data(s), 0, (size_t)ASN1_STRING_length(s)))
			return -1;
		memcpy(it->value, ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
		it->value[ASN1_STRING_length(s)] = '\0';
		break;
	case GEN_IPADD: {
		int l = ASN1_STRING_length(s);
		snprintf(it->type, sizeof(it->type), "ip");
		if ((l != 4 && l != 16) ||
		    !inet_ntop(l == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), it->value, sizeof(it->value)))
			return -1;
		break;
	}
	default:
		/* otherName, directoryName, registeredID, ...: policy sees that they are there */
		snprintf(it->type, sizeof(it->type), "other");
		snprintf(it->value, sizeof(it->value), "%s",
			 type == GEN_OTHERNAME ? "otherName" : type == GEN_DIRNAME ? "directoryName"
			 : type == GEN_RID ? "registeredID" : type == GEN_X400 ? "x400Address" : "ediPartyName");
		break;
	}
	c->nsan++;
	return 0;
}

static int read_subject(struct eg_csr *c, const X509_NAME *name)
{
	int n = X509_NAME_entry_count(name);
	if (n > EG_CSR_MAX_ITEMS)
		return -1;
	for (int i = 0; i < n; i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(name, i);
		struct eg_csr_item *it = &c->subject[c->nsubject];
		obj_name(X509_NAME_ENTRY_get_object(e), it->type, sizeof(it->type));
		if (asn1_text(X509_NAME_ENTRY_get_data(e), it->value, sizeof(it->value)) < 0)
			return -1;
		c->nsubject++;
	}
	int ncn = 0;
	for (int i = 0; i < c->nsubject; i++)
		ncn += strcmp(c->subject[i].type, "CN") == 0;
	if (ncn > 1)
		return -1; /* which one would a relying party look at? */
	BIO *b = BIO_new(BIO_s_mem());
	if (!b)
		return -1;
	X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
	int l = BIO_read(b, c->subject_text, (int)sizeof(c->subject_text) - 1);
	c->subject_text[l > 0 ? l : 0] = '\0';
	int rest = (int)BIO_pending(b);
	BIO_free(b);
	return rest > 0 ? -1 : 0; /* a subject whose text does not fit is refused, never cut */
}

/* A list of requested extensions: names, basicConstraints' cA, and the SANs in detail. 0, or
 * -1 with why set. */
static int read_extension_list(struct eg_csr *c, const STACK_OF(X509_EXTENSION) *exts, char *why, size_t whylen)
{
	if (sk_X509_EXTENSION_num(exts) > EG_CSR_MAX_ITEMS) {
		set_why(why, whylen, "too many requested extensions");
		return -1;
	}
	for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
		X509_EXTENSION *ext = sk_X509_EXTENSION_value(exts, i);
		const ASN1_OBJECT *o = X509_EXTENSION_get_object(ext);
		obj_name(o, c->extensions[c->nextensions], sizeof(c->extensions[0]));
		c->nextensions++;
		if (OBJ_obj2nid(o) == NID_basic_constraints) {
			BASIC_CONSTRAINTS *bc = X509V3_EXT_d2i(ext);
			if (!bc) {
				set_why(why, whylen, "malformed basicConstraints");
				return -1;
			}
			c->requests_ca = bc->ca != 0;
			BASIC_CONSTRAINTS_free(bc);
			continue;
		}
		if (OBJ_obj2nid(o) != NID_subject_alt_name)
			continue;
		GENERAL_NAMES *gens = X509V3_EXT_d2i(ext);
		if (!gens) {
			set_why(why, whylen, "malformed subjectAltName");
			return -1;
		}
		for (int j = 0; j < sk_GENERAL_NAME_num(gens); j++) {
			if (add_san(c, sk_GENERAL_NAME_value(gens, j)) < 0) {
				set_why(why, whylen, "subjectAltName: too many names, or a name too long or malformed");
				GENERAL_NAMES_free(gens);
				return -1;
			}
		}
		GENERAL_NAMES_free(gens);
	}
	return 0;
}

/* Requested extensions (PKCS#9 extensionRequest) of a PKCS#10 request. 0, or -1 with why set. */
static int read_extensions(struct eg_csr *c, X509_REQ *req, char *why, size_t whylen)
{
	/* Exactly what X509_REQ_get_extensions (and CAs built on it) would read, or a refusal: a
	 * second extensionRequest, one with several values, or Microsoft's variant (which OpenSSL
	 * and AD CS also honour) could carry names that policy never saw. */
	int n_ext = 0;
	for (int i = 0; i < X509_REQ_get_attr_count(req); i++) {
		X509_ATTRIBUTE *a = X509_REQ_get_attr(req, i);
		int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a));
		if (nid == NID_ms_ext_req) {
			set_why(why, whylen, "Microsoft extension request attribute is not accepted (use PKCS#9 extensionRequest)");
			return -1;
		}
		if (nid == NID_ext_req && (++n_ext > 1 || X509_ATTRIBUTE_count(a) != 1)) {
			set_why(why, whylen, "more than one extension request");
			return -1;
		}
	}
	if (n_ext == 0)
		return 0;
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	if (!exts) {
		set_why(why, whylen, "malformed extension request");
		return -1;
	}
	int rc = read_extension_list(c, exts, why, whylen);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

static void read_key(struct eg_csr *c, EVP_PKEY *pk)
{
	int id = EVP_PKEY_get_base_id(pk);
	const char *t = id == EVP_PKEY_RSA ? "RSA" : id == EVP_PKEY_RSA_PSS ? "RSA-PSS" : id == EVP_PKEY_EC ? "EC"
		      : id == EVP_PKEY_ED25519 ? "ED25519" : id == EVP_PKEY_ED448 ? "ED448" : id == EVP_PKEY_DSA ? "DSA"
		      : EVP_PKEY_get0_type_name(pk);
	snprintf(c->key_type, sizeof(c->key_type), "%s", t ? t : "unknown");
	c->key_bits = EVP_PKEY_get_bits(pk);
	c->curve[0] = '\0';
	if (id == EVP_PKEY_EC) {
		/* a named curve only: explicit parameters leave curve empty, and policy refuses them */
		size_t l = 0;
		int explicit_params = 0;
		if (EVP_PKEY_get_int_param(pk, OSSL_PKEY_PARAM_EC_DECODED_FROM_EXPLICIT_PARAMS, &explicit_params) != 1 ||
		    explicit_params ||
		    EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, c->curve, sizeof(c->curve), &l) != 1)
			c->curve[0] = '\0';
	}
}

enum eg_csr_status eg_csr_parse(const void *body, size_t len, struct eg_csr **out, char *why, size_t whylen)
{
	const unsigned char *in = body;
	enum eg_csr_status st = EG_CSR_OK;
	X509_REQ *req = NULL;
	struct eg_csr *c = NULL;
	*out = NULL;

	while (len > 0 && is_b64_space(*in)) {
		in++;
		len--;
	}
	if (len == 0) {
		set_why(why, whylen, "empty request body");
		return EG_CSR_EMPTY;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->der = malloc(EG_CSR_MAX_DER))) {
		set_why(why, whylen, "out of memory");
		st = EG_CSR_TOO_LARGE;
		goto fail;
	}
	if (len >= 2 && in[0] == 0x30 && (in[1] & 0x80)) {
		/* DER as such (its second byte is a long-form length; base64 text never has bit 7 set) */
		if (len > EG_CSR_MAX_DER) {
			set_why(why, whylen, "certification request too large");
			st = EG_CSR_TOO_LARGE;
			goto fail;
		}
		memcpy(c->der, in, len);
		c->der_len = len;
	} else {
		const char *txt = (const char *)in;
		size_t tl = len;
		static const char begin[] = "-----BEGIN ", end[] = "-----END ";
		if (tl > sizeof(begin) && memcmp(txt, begin, sizeof(begin) - 1) == 0) {
			/* PEM armour: the base64 between the BEGIN and END lines */
			const char *nl = memchr(txt, '\n', tl);
			const char *e = nl ? memmem(nl, tl - (size_t)(nl - txt), end, sizeof(end) - 1) : NULL;
			if (!nl || !e) {
				set_why(why, whylen, "PEM without END line");
				st = EG_CSR_BAD_ENCODING;
				goto fail;
			}
			tl = (size_t)(e - (nl + 1));
			txt = nl + 1;
		}
		if (tl > EG_CSR_MAX_DER * 2) {
			set_why(why, whylen, "certification request too large");
			st = EG_CSR_TOO_LARGE;
			goto fail;
		}
		long n = eg_base64_decode_ws(txt, tl, c->der, EG_CSR_MAX_DER);
		if (n <= 0) {
			set_why(why, whylen, "body is not base64 (RFC 7030 section 4.2.1)");
			st = EG_CSR_BAD_ENCODING;
			goto fail;
		}
		c->der_len = (size_t)n;
	}

	const unsigned char *p = c->der;
	req = d2i_X509_REQ(NULL, &p, (long)c->der_len);
	if (!req || p != c->der + c->der_len) {
		set_why(why, whylen, req ? "trailing bytes after the certification request" : "not a PKCS#10 certification request");
		st = EG_CSR_BAD_DER;
		goto fail;
	}
	EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
	if (!pk) {
		set_why(why, whylen, "public key missing or not supported");
		st = EG_CSR_BAD_KEY;
		goto fail;
	}
	read_key(c, pk);
	if (X509_REQ_verify(req, pk) != 1) {
		set_why(why, whylen, "signature does not verify with the request's own key (no proof of possession)");
		st = EG_CSR_BAD_SIGNATURE;
		goto fail;
	}
	int signid = X509_REQ_get_signature_nid(req);
	snprintf(c->signature_alg, sizeof(c->signature_alg), "%s", signid != NID_undef ? OBJ_nid2ln(signid) : "unknown");
	if (read_subject(c, X509_REQ_get_subject_name(req)) < 0) {
		set_why(why, whylen, "subject: more than one CN, too many attributes, or a value too long or with a NUL");
		st = EG_CSR_TOO_LARGE;
		goto fail;
	}
	if (read_extensions(c, req, why, whylen) < 0) {
		st = EG_CSR_BAD_DER;
		goto fail;
	}
	c->has_challenge_password = X509_REQ_get_attr_by_NID(req, NID_pkcs9_challengePassword, -1) >= 0;
	X509_REQ_free(req);
	*out = c;
	return EG_CSR_OK;

fail:
	X509_REQ_free(req);
	eg_csr_free(c);
	return st;
}

struct eg_csr *eg_csr_from_cert(X509 *x)
{
	if (!x)
		return NULL;
	struct eg_csr *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	EVP_PKEY *pk = X509_get0_pubkey(x);
	if (pk)
		read_key(c, pk);
	if (read_subject(c, X509_get_subject_name(x)) < 0)
		goto fail;
	GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	for (int j = 0; gens && j < sk_GENERAL_NAME_num(gens); j++) {
		if (add_san(c, sk_GENERAL_NAME_value(gens, j)) < 0) {
			GENERAL_NAMES_free(gens);
			goto fail;
		}
	}
	GENERAL_NAMES_free(gens);
	return c;
fail:
	free(c);
	return NULL;
}

struct eg_csr *eg_csr_from_template(const X509_NAME *subject, EVP_PKEY *pk,
				     const STACK_OF(X509_EXTENSION) *exts, char *why, size_t whylen)
{
	struct eg_csr *c = calloc(1, sizeof(*c));
	if (!c) {
		set_why(why, whylen, "out of memory");
		return NULL;
	}
	if (pk)
		read_key(c, pk);
	else
		snprintf(c->key_type, sizeof(c->key_type), "none");
	if (subject && read_subject(c, subject) < 0) {
		set_why(why, whylen, "subject: more than one CN, too many attributes, or a value too long or with a NUL");
		goto fail;
	}
	if (exts && read_extension_list(c, exts, why, whylen) < 0)
		goto fail;
	return c;
fail:
	eg_csr_free(c);
	return NULL;
}

void eg_csr_free(struct eg_csr *c)
{
	if (!c)
		return;
	free(c->der);
	free(c);
}
