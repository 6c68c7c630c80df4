/* tls.c: OpenSSL contexts for enrollment listeners and upstream CAs; see tls.h. */
#include "tls.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/x509v3.h>

/* err = "what: OpenSSL's reason" (the last queued error), queue cleared. */
static void ssl_err(char *err, size_t errlen, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[256] = "";
	if (e)
		ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, errlen, "%s%s%s", what, buf[0] ? ": " : "", buf);
	ERR_clear_error();
}

/* Reads the first line of a passphrase file into out (without the line end). 0 or -1. */
static int read_passphrase(const char *path, char *out, size_t cap, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot read passphrase file %s", path);
		return -1;
	}
	if (!fgets(out, (int)cap, f))
		out[0] = '\0';
	fclose(f);
	out[strcspn(out, "\r\n")] = '\0';
	return 0;
}

static int pass_cb(char *buf, int size, int rwflag, void *u)
{
	(void)rwflag;
	const char *pass = u;
	size_t n = strlen(pass);
	if (n >= (size_t)size)
		return -1;
	memcpy(buf, pass, n);
	return (int)n;
}

/* Loads a private key (PEM, possibly encrypted). NULL with err set. */
static EVP_PKEY *load_key(const char *path, const char *pass_file, char *err, size_t errlen)
{
	char pass[1024] = "";
	if (pass_file && pass_file[0] && read_passphrase(pass_file, pass, sizeof(pass), err, errlen) < 0)
		return NULL;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "cannot read private key %s", path);
		return NULL;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, pass_cb, pass);
	fclose(f);
	OPENSSL_cleanse(pass, sizeof(pass));
	if (!k) {
		char what[700];
		snprintf(what, sizeof(what), "cannot load private key %s (wrong passphrase?)", path);
		ssl_err(err, errlen, what);
	}
	return k;
}

static int use_pem_identity(SSL_CTX *ctx, const char *cert, const char *key, const char *pass_file, char *err,
			    size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		char what[600];
		snprintf(what, sizeof(what), "cannot load certificate %s", cert);
		ssl_err(err, errlen, what);
		return -1;
	}
	EVP_PKEY *k = load_key(key, pass_file, err, errlen);
	if (!k)
		return -1;
	int ok = SSL_CTX_use_PrivateKey(ctx, k) == 1 && SSL_CTX_check_private_key(ctx) == 1;
	EVP_PKEY_free(k);
	if (!ok) {
		char what[600];
		snprintf(what, sizeof(what), "private key %s does not match certificate %s", key, cert);
		ssl_err(err, errlen, what);
		return -1;
	}
	return 0;
}

static int use_pkcs12_identity(SSL_CTX *ctx, const char *p12path, const char *pass_file, char *err, size_t errlen)
{
	char pass[1024] = "";
	if (read_passphrase(pass_file, pass, sizeof(pass), err, errlen) < 0)
		return -1;
	FILE *f = fopen(p12path, "rb");
	if (!f) {
		snprintf(err, errlen, "cannot read keystore %s", p12path);
		return -1;
	}
	PKCS12 *p12 = d2i_PKCS12_fp(f, NULL);
	fclose(f);
	EVP_PKEY *k = NULL;
	X509 *x = NULL;
	STACK_OF(X509) *chain = NULL;
	int rc = -1;
	if (!p12 || PKCS12_parse(p12, pass, &k, &x, &chain) != 1 || !k || !x) {
		char what[700];
		snprintf(what, sizeof(what), "cannot open keystore %s (wrong password?)", p12path);
		ssl_err(err, errlen, what);
		goto out;
	}
	if (SSL_CTX_use_certificate(ctx, x) != 1 || SSL_CTX_use_PrivateKey(ctx, k) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ssl_err(err, errlen, "keystore key and certificate are not usable");
		goto out;
	}
	for (int i = 0; chain && i < sk_X509_num(chain); i++) {
		X509 *c = sk_X509_value(chain, i);
		if (SSL_CTX_add1_chain_cert(ctx, c) != 1) {
			ssl_err(err, errlen, "keystore chain certificate not usable");
			goto out;
		}
	}
	rc = 0;
out:
	OPENSSL_cleanse(pass, sizeof(pass));
	EVP_PKEY_free(k);
	X509_free(x);
	sk_X509_pop_free(chain, X509_free);
	PKCS12_free(p12);
	return rc;
}

static int load_trust(SSL_CTX *ctx, const char *trust, char *err, size_t errlen)
{
	struct stat st;
	if (!trust || !trust[0])
		return SSL_CTX_set_default_verify_paths(ctx) == 1 ? 0 : (ssl_err(err, errlen, "no system trust store"), -1);
	if (stat(trust, &st) != 0) {
		snprintf(err, errlen, "trust anchors %s: not found", trust);
		return -1;
	}
	int ok = S_ISDIR(st.st_mode) ? SSL_CTX_load_verify_dir(ctx, trust) : SSL_CTX_load_verify_file(ctx, trust);
	if (ok != 1) {
		char what[600];
		snprintf(what, sizeof(what), "cannot load trust anchors %s", trust);
		ssl_err(err, errlen, what);
		return -1;
	}
	return 0;
}

SSL_CTX *eg_tls_server_ctx(const char *cert, const char *key, const char *key_pass_file, const char *client_ca,
			   char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* resumed sessions of clients that sent a certificate must not fail for want of a context */
	static const unsigned char sid_ctx[] = "enrollgate";
	SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
	if (use_pem_identity(ctx, cert, key, key_pass_file, err, errlen) < 0)
		goto fail;
	if (client_ca && client_ca[0]) {
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
		if (!names || load_trust(ctx, client_ca, err, errlen) < 0) {
			if (names)
				sk_X509_NAME_pop_free(names, X509_NAME_free);
			else
				snprintf(err, errlen, "cannot load device CA %s", client_ca);
			goto fail;
		}
		SSL_CTX_set_client_CA_list(ctx, names);
		/* asked for, verified if sent; a missing one is judged per request (Basic may do) */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_verify_depth(ctx, 8);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *eg_tls_client_ctx(const char *trust, const struct eg_tls_identity *id, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		ssl_err(err, errlen, "SSL_CTX_new");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (load_trust(ctx, trust, err, errlen) < 0)
		goto fail;
	if (id && id->pkcs12[0]) {
		if (use_pkcs12_identity(ctx, id->pkcs12, id->passphrase_file, err, errlen) < 0)
			goto fail;
	} else if (id && id->cert[0]) {
		if (use_pem_identity(ctx, id->cert, id->key, id->passphrase_file, err, errlen) < 0)
			goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void eg_tls_describe_cert(X509 *x, char *subject, size_t slen, char *serial, size_t snlen)
{
	subject[0] = serial[0] = '\0';
	if (!x)
		return;
	BIO *b = BIO_new(BIO_s_mem());
	if (b) {
		X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
		int n = BIO_read(b, subject, (int)slen - 1);
		subject[n > 0 ? n : 0] = '\0';
		BIO_free(b);
	}
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	char *hex = bn ? BN_bn2hex(bn) : NULL;
	if (hex)
		snprintf(serial, snlen, "%s", hex);
	OPENSSL_free(hex);
	BN_free(bn);
}
