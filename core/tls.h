/* tls.h: OpenSSL contexts for the enrollment listeners (server side, with optional client
 * certificate verification) and for upstream CAs (client side, with the appliance's own
 * identity for mutual TLS). Errors come back as one line of text for `enrollgate check`, the
 * log and the admin /status; key passphrases never appear in them. */
#ifndef EG_TLS_H
#define EG_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* The appliance identity toward upstream CAs: either PEM (cert chain + private key, the key
 * possibly encrypted with the passphrase in passphrase_file) or a PKCS#12 keystore whose
 * password (shared by keystore and key) is in passphrase_file. Paths are absolute. */
struct eg_tls_identity {
	char cert[512];
	char key[512];
	char pkcs12[512];
	char passphrase_file[512];
};

/* Server context: certificate chain + key (key_pass_file may be ""), TLS 1.2+. If client_ca
 * is not "", client certificates are asked for and verified against it; a client may still
 * come without one (the request decides whether that is enough). NULL with err set on failure. */
SSL_CTX *eg_tls_server_ctx(const char *cert, const char *key, const char *key_pass_file, const char *client_ca,
			   char *err, size_t errlen);

/* Client context: trust anchors from trust (a PEM file or a directory of PEM files; "" = the
 * system store), and the identity if id is not NULL. NULL with err set on failure. */
SSL_CTX *eg_tls_client_ctx(const char *trust, const struct eg_tls_identity *id, char *err, size_t errlen);

/* One line describing a certificate: subject, serial (hex), notAfter; for logs and audit. */
void eg_tls_describe_cert(X509 *x, char *subject, size_t slen, char *serial, size_t snlen);

#endif
