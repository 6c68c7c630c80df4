/* est_conf.h: the EST registration authority's configuration (<conf>/est.lua), compiled into C
 * structures with each policy generation: listeners, the device-side TLS context, the
 * appliance identity and trust anchors per label (client TLS contexts), Basic users (password
 * hashes only), timeouts. A reload builds a new one; requests keep the one they started with. */
#ifndef EG_EST_CONF_H
#define EG_EST_CONF_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "settings.h"
#include "upstream.h"

struct lua_State;
struct eg_load_error;

#define EG_EST_MAX_LABELS 64
#define EG_EST_MAX_UPSTREAMS 8
#define EG_EST_MAX_USERS 1024
#define EG_EST_MAX_CONNECTIONS 1024  /* est.lua max_connections by default */

enum {
	EG_EST_AUTH_CERT = 1,      /* a TLS client certificate that verifies against the device CA */
	EG_EST_AUTH_BASIC = 2,     /* HTTP Basic, checked against the users' password hashes */
	EG_EST_AUTH_BOTH = 4,      /* both at once */
};

/* The EST operations (RFC 7030 section 3.2.2), in the order eg_est_op() numbers them. */
enum { EG_EST_CACERTS, EG_EST_SIMPLEENROLL, EG_EST_SIMPLEREENROLL, EG_EST_CSRATTRS, EG_EST_SERVERKEYGEN,
       EG_EST_FULLCMC, EG_EST_NOPS };

/* The operation named op (EG_EST_*), or -1. */
int eg_est_op(const char *op);

struct eg_est_label {
	char name[64];             /* "" for /.well-known/est/<op>; case-sensitive */
	struct eg_upstream up[EG_EST_MAX_UPSTREAMS];
	int nup;
	SSL_CTX *client_ctx;       /* trust anchors of the upstream + the appliance identity */
	int auth[EG_EST_NOPS];     /* per operation: EG_EST_AUTH_* methods, any one of which lets a
	                              device in; 0 = none needed (default for cacerts and csrattrs) */
	int verify_name;           /* check the upstream certificate names the upstream host */
	char upstream_authz[200];  /* "Basic ..." toward the CA (upstream_auth), or "" */
};

struct eg_est_user {
	char name[64];
	char hash[200];            /* pbkdf2-sha256$ITER$SALT_B64$HASH_B64 */
};

struct eg_est_conf {
	char listen[EG_MAX_LISTEN][128];
	int nlisten;
	SSL_CTX *server_ctx;       /* device side: server certificate, device CA */
	struct eg_est_label *labels;
	int nlabels;
	struct eg_est_user *users;
	int nusers;
	struct eg_upstream_timeouts timeouts;
	int retry_after;           /* seconds told to devices when no upstream answers (503) */
	double down_hold;          /* seconds a failed upstream is skipped while another one is left */
	double cacerts_cache;      /* seconds a cacerts answer is served from cache (0: not cached) */
	int max_connections;       /* device connections open at once; at the limit no more are accepted */
	struct eg_est_error {      /* from policies.errors at load: status and text of an answer */
		int status;
		char text[160];
	} err_upstream_down, err_upstream_timeout, err_bad_answer;
};

/* Fill the error answers from the module table at idx (policies.errors; its `map`), keeping
 * the defaults for codes it lacks. 0, or -1 with err set for a bad entry. */
int eg_est_conf_errors(struct lua_State *L, int idx, struct eg_est_conf *c, struct eg_load_error *err);

/* Compile the table at index idx (the value est.lua returned). conf_dir resolves relative
 * paths; file is est.lua's path for error locations. 0, or -1 with err set. */
int eg_est_conf_load(struct lua_State *L, int idx, const char *conf_dir, const char *file,
		     struct eg_est_conf **out, struct eg_load_error *err);
void eg_est_conf_free(struct eg_est_conf *c);

/* The label named name (n bytes), or NULL: routing is exact and case-sensitive. */
const struct eg_est_label *eg_est_conf_label(const struct eg_est_conf *c, const char *name, size_t n);

/* The stored hash of user, or NULL. */
const char *eg_est_user_hash(const struct eg_est_conf *c, const char *user);

/* 1 if password matches the stored hash (PBKDF2: costly, run it off the event loop), else 0. */
int eg_est_verify_hash(const char *hash, const char *password);

/* Hash a password into the stored form (for `enrollgate hash-password`). 0 or -1. */
int eg_est_hash_password(const char *password, char *out, size_t cap);

#endif
