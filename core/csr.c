/* csr.c: PKCS#10 parsing and proof-of-possession check with OpenSSL; see csr.h.
 *
 * The request is decoded with a template of its own (the same structure as OpenSSL's X509_REQ,
 * the key left as plain SubjectPublicKeyInfo), because d2i_X509_REQ decodes the key through
 * OSSL_DECODER_CTX_new_for_pkey, which in OpenSSL 3.0 assembles a decoder chain from every
 * provider's decoders on each call: ~100 µs of the ~200 µs a P-256 request cost. For the key
 * types policy accepts (RSA, EC on the accepted named curves, Ed25519, Ed448) the key is built
 * from its parts with EVP_PKEY_fromdata; any other key goes OpenSSL's full way. Both keys are
 * then used the same way (ASN1_item_verify over the request info as received). */
#include "csr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1t.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
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

/* Requested extensions (PKCS#9 extensionRequest) among the attributes of a PKCS#10 request.
 * 0, or -1 with why set. */
static int read_extensions(struct eg_csr *c, const STACK_OF(X509_ATTRIBUTE) *attrs, char *why, size_t whylen)
{
	/* Exactly what X509_REQ_get_extensions (and CAs built on it) would read, or a refusal: a
	 * second extensionRequest, one with several values, or Microsoft's variant (which OpenSSL
	 * and AD CS also honour) could carry names that policy never saw. */
	int n_ext = 0;
	X509_ATTRIBUTE *ext_req = NULL;
	for (int i = 0; i < X509at_get_attr_count(attrs); i++) {
		X509_ATTRIBUTE *a = X509at_get_attr(attrs, i);
		int nid = OBJ_obj2nid(X509_ATTRIBUTE_get0_object(a));
		if (nid == NID_ms_ext_req) {
			set_why(why, whylen, "Microsoft extension request attribute is not accepted (use PKCS#9 extensionRequest)");
			return -1;
		}
		if (nid == NID_ext_req && (++n_ext > 1 || X509_ATTRIBUTE_count(a) != 1)) {
			set_why(why, whylen, "more than one extension request");
			return -1;
		}
		if (nid == NID_ext_req)
			ext_req = a;
	}
	if (n_ext == 0)
		return 0;
	/* as X509_REQ_get_extensions: the one value, a SEQUENCE OF Extension */
	const ASN1_TYPE *v = X509_ATTRIBUTE_get0_type(ext_req, 0);
	const unsigned char *p = v && v->type == V_ASN1_SEQUENCE ? v->value.sequence->data : NULL;
	STACK_OF(X509_EXTENSION) *exts = p ? (STACK_OF(X509_EXTENSION) *)ASN1_item_d2i(
		NULL, &p, v->value.sequence->length, ASN1_ITEM_rptr(X509_EXTENSIONS)) : NULL;
	if (!exts) {
		set_why(why, whylen, "malformed extension request");
		return -1;
	}
	int rc = read_extension_list(c, exts, why, whylen);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return rc;
}

/* ---- the request's structure (RFC 2986), as OpenSSL's X509_REQ template with a plain key ---- */

typedef struct {
	X509_ALGOR *algorithm;
	ASN1_BIT_STRING *public_key;
} EG_SPKI;

ASN1_SEQUENCE(EG_SPKI) = {
	ASN1_SIMPLE(EG_SPKI, algorithm, X509_ALGOR),
	ASN1_SIMPLE(EG_SPKI, public_key, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(EG_SPKI)

typedef struct {
	ASN1_ENCODING enc;             /* the bytes as received: what the signature covers */
	ASN1_INTEGER *version;
	X509_NAME *subject;
	EG_SPKI *spki;
	STACK_OF(X509_ATTRIBUTE) *attributes;
} EG_REQ_INFO;

ASN1_SEQUENCE_enc(EG_REQ_INFO, enc, 0) = {
	ASN1_SIMPLE(EG_REQ_INFO, version, ASN1_INTEGER),
	ASN1_SIMPLE(EG_REQ_INFO, subject, X509_NAME),
	ASN1_SIMPLE(EG_REQ_INFO, spki, EG_SPKI),
	/* not OPTIONAL in RFC 2986; OpenSSL's template accepts its absence, and so does this one */
	ASN1_IMP_SET_OF_OPT(EG_REQ_INFO, attributes, X509_ATTRIBUTE, 0),
} static_ASN1_SEQUENCE_END_ref(EG_REQ_INFO, EG_REQ_INFO)

typedef struct {
	EG_REQ_INFO *info;
	X509_ALGOR *sig_alg;
	ASN1_BIT_STRING *signature;
} EG_REQ;

ASN1_SEQUENCE(EG_REQ) = {
	ASN1_SIMPLE(EG_REQ, info, EG_REQ_INFO),
	ASN1_SIMPLE(EG_REQ, sig_alg, X509_ALGOR),
	ASN1_SIMPLE(EG_REQ, signature, ASN1_BIT_STRING),
} static_ASN1_SEQUENCE_END(EG_REQ)

/* RSAPublicKey (RFC 8017 A.1.1) */
typedef struct {
	ASN1_INTEGER *n;
	ASN1_INTEGER *e;
} EG_RSA_PUB;

ASN1_SEQUENCE(EG_RSA_PUB) = {
	ASN1_SIMPLE(EG_RSA_PUB, n, ASN1_INTEGER),
	ASN1_SIMPLE(EG_RSA_PUB, e, ASN1_INTEGER),
} static_ASN1_SEQUENCE_END(EG_RSA_PUB)

/* An EVP_PKEY of type name from params, or NULL. */
static EVP_PKEY *key_fromdata(const char *name, OSSL_PARAM *params)
{
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL);
	if (!ctx || EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pk = NULL;
	EVP_PKEY_CTX_free(ctx);
	return pk;
}

static EVP_PKEY *rsa_key(const unsigned char *der, int len)
{
	const unsigned char *p = der;
	EG_RSA_PUB *k = (EG_RSA_PUB *)ASN1_item_d2i(NULL, &p, len, ASN1_ITEM_rptr(EG_RSA_PUB));
	BIGNUM *n = NULL, *e = NULL;
	OSSL_PARAM_BLD *b = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY *pk = NULL;
	if (!k || p != der + len || ASN1_STRING_type(k->n) != V_ASN1_INTEGER || ASN1_STRING_type(k->e) != V_ASN1_INTEGER ||
	    !(n = ASN1_INTEGER_to_BN(k->n, NULL)) || !(e = ASN1_INTEGER_to_BN(k->e, NULL)) || BN_is_zero(n) ||
	    BN_is_zero(e) || !(b = OSSL_PARAM_BLD_new()) || !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, e) || !(params = OSSL_PARAM_BLD_to_param(b)))
		goto out;
	pk = key_fromdata("RSA", params);
out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	BN_free(n);
	BN_free(e);
	ASN1_item_free((ASN1_VALUE *)k, ASN1_ITEM_rptr(EG_RSA_PUB));
	return pk;
}

/* A key built from its parts, for the key types policy accepts; NULL for anything else
 * (another algorithm or curve, parameters where there should be none, a malformed key): the
 * caller then lets OpenSSL's decoders decide. */
static EVP_PKEY *key_from_parts(const EG_SPKI *k)
{
	static const int curves[] = { NID_X9_62_prime256v1, NID_secp384r1, NID_secp521r1, NID_secp256k1,
				      NID_brainpoolP256r1, NID_brainpoolP384r1, NID_brainpoolP512r1 };
	const ASN1_OBJECT *alg;
	int ptype;
	const void *pval;
	X509_ALGOR_get0(&alg, &ptype, &pval, k->algorithm);
	const unsigned char *bits = ASN1_STRING_get0_data(k->public_key);
	int n = ASN1_STRING_length(k->public_key);
	if ((k->public_key->flags & 0x07) || n <= 0)
		return NULL;  /* a key is whole bytes */
	switch (OBJ_obj2nid(alg)) {
	case NID_rsaEncryption:
		return ptype == V_ASN1_NULL || ptype == V_ASN1_UNDEF ? rsa_key(bits, n) : NULL;
	case NID_X9_62_id_ecPublicKey: {
		int curve = ptype == V_ASN1_OBJECT ? OBJ_obj2nid(pval) : NID_undef;
		for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++) {
			if (curve != curves[i])
				continue;
			OSSL_PARAM params[] = {
				OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)OBJ_nid2sn(curve), 0),
				OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)bits, (size_t)n),
				OSSL_PARAM_construct_end(),
			};
			return key_fromdata("EC", params);
		}
		return NULL;
	}
	case NID_ED25519:
		return ptype == V_ASN1_UNDEF ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, bits, (size_t)n) : NULL;
	case NID_ED448:
		return ptype == V_ASN1_UNDEF ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED448, NULL, bits, (size_t)n) : NULL;
	default:
		return NULL;
	}
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

EVP_PKEY *eg_csr_key_from_spki(X509_ALGOR *algorithm, ASN1_BIT_STRING *public_key)
{
	EG_SPKI k = { .algorithm = algorithm, .public_key = public_key };
	EVP_PKEY *pk = algorithm && public_key ? key_from_parts(&k) : NULL;
	if (!pk && algorithm && public_key) {
		/* another key type: OpenSSL's decoders, from the structure's DER */
		unsigned char *der = NULL;
		int n = ASN1_item_i2d((ASN1_VALUE *)&k, &der, ASN1_ITEM_rptr(EG_SPKI));
		const unsigned char *p = der;
		pk = n > 0 ? d2i_PUBKEY(NULL, &p, n) : NULL;
		OPENSSL_free(der);
	}
	ERR_clear_error();
	return pk;
}

enum eg_csr_status eg_csr_parse(const void *body, size_t len, struct eg_csr **out, char *why, size_t whylen)
{
	const unsigned char *in = body;
	enum eg_csr_status st = EG_CSR_OK;
	X509_REQ *req = NULL;
	EG_REQ *r = NULL;
	EVP_PKEY *pk = NULL;
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
	r = (EG_REQ *)ASN1_item_d2i(NULL, &p, (long)c->der_len, ASN1_ITEM_rptr(EG_REQ));
	if (!r || p != c->der + c->der_len) {
		set_why(why, whylen, r ? "trailing bytes after the certification request" : "not a PKCS#10 certification request");
		st = EG_CSR_BAD_DER;
		goto fail;
	}
	pk = key_from_parts(r->info->spki);
	if (!pk) {
		/* another key type: OpenSSL's decoders, through its own parse of the same bytes */
		p = c->der;
		req = d2i_X509_REQ(NULL, &p, (long)c->der_len);
		if ((pk = req ? X509_REQ_get0_pubkey(req) : NULL))
			EVP_PKEY_up_ref(pk);
	}
	if (!pk) {
		set_why(why, whylen, "public key missing or not supported");
		st = EG_CSR_BAD_KEY;
		goto fail;
	}
	read_key(c, pk);
	/* as X509_REQ_verify: the signature over the request info exactly as received */
	if (ASN1_item_verify(ASN1_ITEM_rptr(EG_REQ_INFO), r->sig_alg, r->signature, r->info, pk) != 1) {
		set_why(why, whylen, "signature does not verify with the request's own key (no proof of possession)");
		st = EG_CSR_BAD_SIGNATURE;
		goto fail;
	}
	int signid = OBJ_obj2nid(r->sig_alg->algorithm);
	snprintf(c->signature_alg, sizeof(c->signature_alg), "%s", signid != NID_undef ? OBJ_nid2ln(signid) : "unknown");
	if (read_subject(c, r->info->subject) < 0) {
		set_why(why, whylen, "subject: more than one CN, too many attributes, or a value too long or with a NUL");
		st = EG_CSR_TOO_LARGE;
		goto fail;
	}
	if (read_extensions(c, r->info->attributes, why, whylen) < 0) {
		st = EG_CSR_BAD_DER;
		goto fail;
	}
	c->has_challenge_password = X509at_get_attr_by_NID(r->info->attributes, NID_pkcs9_challengePassword, -1) >= 0;
	EVP_PKEY_free(pk);
	X509_REQ_free(req);
	ASN1_item_free((ASN1_VALUE *)r, ASN1_ITEM_rptr(EG_REQ));
	ERR_clear_error();
	*out = c;
	return EG_CSR_OK;

fail:
	EVP_PKEY_free(pk);
	X509_REQ_free(req);
	ASN1_item_free((ASN1_VALUE *)r, ASN1_ITEM_rptr(EG_REQ));
	ERR_clear_error();
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
