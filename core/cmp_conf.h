/* cmp_conf.h: the CMP proxy's configuration (<conf>/cmp.lua), compiled into C structures with
 * each policy generation: listeners, path forms, aliases (upstream CA URLs, allowed message
 * types, accepted protection: MAC keys, signature issuers and CRLs), timeouts, and the CMP
 * error answers (failInfo and text) per internal reason from policies.errors. */
#ifndef EG_CMP_CONF_H
#define EG_CMP_CONF_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "settings.h"
#include "upstream.h"

struct lua_State;
struct eg_load_error;

#define EG_CMP_MAX_ALIASES 64
#define EG_CMP_MAX_UPSTREAMS 8
#define EG_CMP_MAX_MAC_KEYS 256

enum {
	EG_CMP_ALLOW_NONE = 1,        /* unprotected messages */
	EG_CMP_ALLOW_MAC = 2,         /* password-based MAC with a configured keyId */
	EG_CMP_ALLOW_SIGNATURE = 4,   /* a signer that chains to the alias' issuers */
};

struct eg_cmp_mac_key {
	unsigned char kid[64];
	size_t kid_len;
	unsigned char secret[256];
	size_t secret_len;
};

struct eg_cmp_alias {
	char name[64];
	struct eg_upstream up[EG_CMP_MAX_UPSTREAMS];
	int nup;
	SSL_CTX *client_ctx;          /* https upstreams: trust + identity; NULL if all are http */
	int verify_name;
	int backend;                  /* where checked messages go: an index of eg_cmp_backends */
	uint32_t types;               /* bit (1 << body type) per message type accepted */
	int protection;               /* EG_CMP_ALLOW_* */
	struct eg_cmp_mac_key *mac;
	int nmac;
	char issuers[512];            /* signature: issuer certificates (file or directory), or "" */
	char crls[512];               /* CRLs (file or directory), or "": no revocation check */
	double crl_refresh;           /* seconds between looks at the CRL files */
	/* The signature trust store: issuers + CRLs, rebuilt when the CRL files change (the only
	 * part of a generation that changes after load; the loop thread alone touches it). */
	X509_STORE *trust;
	double crl_checked_at;
	time_t crl_mtime;
	char crl_error[300];          /* why the changed CRLs could not be re-read, or "" */
};

/* Internal reasons a message is refused for; policies.errors maps each (map.cmp_<reason>) to
 * a failInfo and a text. */
enum eg_cmp_reason {
	EG_CMP_R_BAD_MESSAGE, EG_CMP_R_UNPROTECTED, EG_CMP_R_PROTECTION_NOT_ALLOWED,
	EG_CMP_R_PROTECTION_UNSUPPORTED, EG_CMP_R_MAC_UNKNOWN_KEY, EG_CMP_R_MAC_FAILED,
	EG_CMP_R_SIGNATURE_NO_CERT, EG_CMP_R_SIGNATURE_FAILED, EG_CMP_R_SIGNER_UNTRUSTED,
	EG_CMP_R_SIGNER_REVOKED, EG_CMP_R_REVOCATION_UNKNOWN, EG_CMP_R_NO_CHAINS,
	EG_CMP_R_TYPE_NOT_ALLOWED, EG_CMP_R_BAD_TEMPLATE, EG_CMP_R_BAD_POP, EG_CMP_R_DENIED,
	EG_CMP_R_POLICY_ERROR, EG_CMP_R_UPSTREAM_DOWN, EG_CMP_R_UPSTREAM_TIMEOUT,
	EG_CMP_R_COUNT
};

struct eg_cmp_error {
	int failinfo;                 /* bit number (OSSL_CMP_PKIFAILUREINFO_*) */
	char text[160];
};

struct eg_cmp_conf {
	char listen[EG_MAX_LISTEN][128];
	int nlisten;
	SSL_CTX *server_ctx;          /* optional HTTPS on the client side; NULL: plain HTTP */
	char legacy_prefix[128];      /* e.g. "/ejbca/publicweb/cmp/": <prefix><alias>; "" if none */
	char default_alias[64];       /* for /.well-known/cmp; "" if none */
	struct eg_cmp_alias *aliases;
	int naliases;
	struct eg_upstream_timeouts timeouts;
	double down_hold;
	struct eg_cmp_error errors[EG_CMP_R_COUNT];
};

/* The reason's name ("mac_failed", ...); the errors map key is "cmp_" + it. */
const char *eg_cmp_reason_name(enum eg_cmp_reason r);

/* Compile the table at index idx (the value cmp.lua returned). conf_dir resolves relative
 * paths; file is cmp.lua's path for error locations. 0, or -1 with err set. */
int eg_cmp_conf_load(struct lua_State *L, int idx, const char *conf_dir, const char *file,
		     struct eg_cmp_conf **out, struct eg_load_error *err);

/* Fill errors from the module table at idx (policies.errors; its map.cmp_*). 0, or -1. */
int eg_cmp_conf_errors(struct lua_State *L, int idx, struct eg_cmp_conf *c, struct eg_load_error *err);

void eg_cmp_conf_free(struct eg_cmp_conf *c);

/* The alias named name (n bytes), or NULL: exact and case-sensitive. */
struct eg_cmp_alias *eg_cmp_conf_alias(const struct eg_cmp_conf *c, const char *name, size_t n);

/* The MAC secret for keyId kid, or NULL. */
const struct eg_cmp_mac_key *eg_cmp_alias_mac_key(const struct eg_cmp_alias *a, const unsigned char *kid, size_t n);

/* The alias' signature trust store, the CRLs re-read first if their files changed (looked at
 * most every crl_refresh seconds). NULL when no issuers are configured. *crl_error is NULL, or
 * why the CRL files changed and could not be re-read: the store then still holds the old CRLs,
 * and a signer they accept has an unknown revocation status. */
X509_STORE *eg_cmp_alias_trust(struct eg_cmp_alias *a, const char **crl_error);

#endif
