/* est_conf.c: compiles <conf>/est.lua into struct eg_est_conf; see est_conf.h. */
#include "est_conf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <lauxlib.h>
#include <lua.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "csr.h"
#include "policy.h"
#include "conf_read.h"
#include "tls.h"

#define PBKDF2_ITER_DEFAULT 200000
#define PBKDF2_ITER_MIN 10000

int eg_est_op(const char *op)
{
	static const char *const ops[EG_EST_NOPS] = { "cacerts", "simpleenroll", "simplereenroll", "csrattrs",
						      "serverkeygen", "fullcmc" };
	for (int i = 0; i < EG_EST_NOPS; i++)
		if (strcmp(op, ops[i]) == 0)
			return i;
	return -1;
}

/* One list of methods at the top of the stack: { "cert" }, { "basic" }, { "cert", "basic" }
 * (either), { "cert+basic" } (both); "none" for no authentication. EG_EST_AUTH_* bits or -1. */
static int parse_methods(const struct eg_conf_reader *r, const char *where, const char *key)
{
	lua_State *L = r->L;
	if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "none") == 0)
		return 0;
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0)
		return eg_conf_fail(r, "auth", "%s.%s: expected a list of \"cert\", \"basic\", \"cert+basic\", or \"none\"",
				    where, key);
	int auth = 0;
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		int bit = strcmp(m, "cert") == 0 ? EG_EST_AUTH_CERT : strcmp(m, "basic") == 0 ? EG_EST_AUTH_BASIC
			: strcmp(m, "cert+basic") == 0 ? EG_EST_AUTH_BOTH : 0;
		lua_pop(L, 1);
		if (!bit)
			return eg_conf_fail(r, "auth", "%s.%s: unknown method (use \"cert\", \"basic\" or \"cert+basic\")",
					    where, key);
		auth |= bit;
	}
	return auth;
}

/* auth = METHODS (the POST operations) or auth = { OP = METHODS or "none", ... } per operation.
 * Defaults: { "cert" } for simpleenroll, simplereenroll and serverkeygen; none for cacerts and
 * csrattrs (RFC 7030 4.1.1, 4.5.1: the CA certificates and attributes are public). */
static int parse_auth(const struct eg_conf_reader *r, int t, int auth[EG_EST_NOPS], const char *where)
{
	lua_State *L = r->L;
	for (int i = 0; i < EG_EST_NOPS; i++)
		auth[i] = i == EG_EST_CACERTS || i == EG_EST_CSRATTRS ? 0 : EG_EST_AUTH_CERT;
	lua_getfield(L, t, "auth");
	int at = lua_gettop(L), rc = 0;
	if (lua_isnil(L, at)) {
		/* defaults */
	} else if (lua_istable(L, at) && lua_rawlen(L, at) == 0) {
		/* per operation; an empty table names none */
		int n = 0;
		lua_pushnil(L);
		while (rc == 0 && lua_next(L, at) != 0) {
			n++;
			const char *op = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
			int i = eg_est_op(op), m;
			if (i < 0 || i == EG_EST_FULLCMC)
				rc = eg_conf_fail(r, "auth", "%s.auth: '%s' is not an EST operation (cacerts, simpleenroll, "
						  "simplereenroll, csrattrs, serverkeygen)", where, op);
			else if ((m = parse_methods(r, where, op)) < 0)
				rc = -1;
			else
				auth[i] = m;
			lua_pop(L, 1);
		}
		if (rc == 0 && n == 0)
			rc = eg_conf_fail(r, "auth", "%s.auth: expected a list of methods or a table of operations", where);
	} else {
		int m = parse_methods(r, where, "auth");
		if (m <= 0)
			rc = m < 0 ? -1 : eg_conf_fail(r, "auth", "%s.auth: \"none\" only per operation "
						       "(auth = { csrattrs = \"none\" })", where);
		else
			auth[EG_EST_SIMPLEENROLL] = auth[EG_EST_SIMPLEREENROLL] = auth[EG_EST_SERVERKEYGEN] = m;
	}
	lua_settop(L, at - 1);
	return rc;
}

/* upstream_auth = { user = "name", password_file = "path" }: HTTP Basic toward the label's CAs,
 * for CAs that want it besides (or instead of) the appliance's certificate. The password is read
 * from its file (first line) and kept only as the Authorization value; it is never logged. */
static int parse_upstream_auth(const struct eg_conf_reader *r, int t, struct eg_est_label *lb, const char *where)
{
	lua_State *L = r->L;
	lb->upstream_authz[0] = '\0';
	lua_getfield(L, t, "upstream_auth");
	int at = lua_gettop(L), rc = 0;
	if (lua_isnil(L, at))
		goto out;
	char w[128], path[512];
	snprintf(w, sizeof(w), "%s.upstream_auth", where);
	static const char *const known[] = { "user", "password_file", NULL };
	if (!lua_istable(L, at)) {
		rc = eg_conf_fail(r, "upstream_auth", "%s: expected { user = ..., password_file = ... }", w);
		goto out;
	}
	if (eg_conf_check_keys(r, at, known, w) < 0 || eg_conf_path(r, at, "password_file", path, sizeof(path), w) < 0) {
		rc = -1;
		goto out;
	}
	lua_getfield(L, at, "user");
	const char *user = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
	unsigned char cred[128]; /* user:password; its base64 fits upstream_authz */
	size_t ul = strlen(user), pl = 0;
	if (!ul || ul > 64 || strchr(user, ':') || strpbrk(user, "\r\n")) {
		rc = eg_conf_fail(r, "user", "%s.user: a name of 1 to 64 characters without ':'", w);
	} else if (!path[0] || eg_conf_read_secret(path, cred + ul + 1, sizeof(cred) - ul - 1, &pl) < 0) {
		rc = eg_conf_fail(r, "password_file", "%s.password_file: cannot read a password (one line) from '%s'", w, path);
	} else {
		memcpy(cred, user, ul);
		cred[ul] = ':';
		memcpy(lb->upstream_authz, "Basic ", 6);
		EVP_EncodeBlock((unsigned char *)lb->upstream_authz + 6, cred, (int)(ul + 1 + pl));
	}
	OPENSSL_cleanse(cred, sizeof(cred));
out:
	lua_settop(L, at - 1);
	return rc;
}

static int parse_label(const struct eg_conf_reader *r, int t, const struct eg_tls_identity *id,
		       struct eg_est_label *lb)
{
	lua_State *L = r->L;
	char where[96], trust[512];
	snprintf(where, sizeof(where), "labels[\"%s\"]", lb->name);
	static const char *const known[] = { "upstreams", "trust", "auth", "verify_name", "upstream_auth", NULL };
	if (!lua_istable(L, t))
		return eg_conf_fail(r, lb->name[0] ? lb->name : "labels", "%s: expected a table", where);
	if (eg_conf_check_keys(r, t, known, where) < 0 || parse_auth(r, t, lb->auth, where) < 0 ||
	    eg_conf_path(r, t, "trust", trust, sizeof(trust), where) < 0)
		return -1;
	lua_getfield(L, t, "verify_name");
	lb->verify_name = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
	lua_pop(L, 1);
	if (parse_upstream_auth(r, t, lb, where) < 0 ||
	    eg_conf_upstreams(r, t, where, 0, lb->up, EG_EST_MAX_UPSTREAMS, &lb->nup) < 0)
		return -1;
	char why[512];
	lb->client_ctx = eg_tls_client_ctx(trust, id, why, sizeof(why));
	if (!lb->client_ctx)
		return eg_conf_fail(r, lb->name[0] ? lb->name : "identity", "%s: %s", where, why);
	return 0;
}

static int parse_users(const struct eg_conf_reader *r, int t, struct eg_est_conf *c)
{
	lua_State *L = r->L;
	lua_getfield(L, t, "users");
	int ut = lua_gettop(L);
	if (lua_isnil(L, ut)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, ut)) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "users", "users: expected { name = \"pbkdf2-sha256$...\" }");
	}
	c->users = calloc(EG_EST_MAX_USERS, sizeof(*c->users));
	if (!c->users)
		return eg_conf_fail(r, NULL, "out of memory");
	lua_pushnil(L);
	while (lua_next(L, ut)) {
		const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const char *hash = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		unsigned iter = 0;
		if (!name || !name[0] || strlen(name) >= sizeof(c->users[0].name) || strchr(name, ':') || !hash ||
		    strlen(hash) >= sizeof(c->users[0].hash) || sscanf(hash, "pbkdf2-sha256$%u$", &iter) != 1 ||
		    iter < PBKDF2_ITER_MIN) {
			char needle[64];
			snprintf(needle, sizeof(needle), "%s", name ? name : "users");
			lua_settop(L, ut - 1);
			return eg_conf_fail(r, needle,
				    "users[%s]: expected a password hash from `enrollgate hash-password` (never the password)",
				    name ? name : "?");
		}
		if (c->nusers >= EG_EST_MAX_USERS) {
			lua_settop(L, ut - 1);
			return eg_conf_fail(r, "users", "users: more than %d", EG_EST_MAX_USERS);
		}
		snprintf(c->users[c->nusers].name, sizeof(c->users[0].name), "%s", name);
		snprintf(c->users[c->nusers].hash, sizeof(c->users[0].hash), "%s", hash);
		c->nusers++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

int eg_est_conf_load(lua_State *L, int idx, const char *conf_dir, const char *file, struct eg_est_conf **out,
		     struct eg_load_error *err)
{
	int t = lua_absindex(L, idx);
	int top = lua_gettop(L);
	struct eg_est_conf *c = calloc(1, sizeof(*c));
	struct eg_conf_reader rd = { L, "est", file, conf_dir, err }, *r = &rd;
	struct eg_tls_identity id;
	int have_id = 0;
	char cert[512], key[512], pass[512], device_ca[512];
	*out = NULL;
	if (!c)
		return eg_conf_fail(r, NULL, "out of memory");
	c->down_hold = 30;
	c->cacerts_cache = 3600;
	c->err_upstream_down = (struct eg_est_error){ 503, "no upstream CA answered" };
	c->err_upstream_timeout = (struct eg_est_error){ 503, "the CA took the request and did not answer in time; retry later" };
	c->err_bad_answer = (struct eg_est_error){ 502, "upstream CA answered with something that is not a PKCS#7" };
	double retry_after = 60, max_connections = EG_EST_MAX_CONNECTIONS;
	static const char *const known[] = { "listen", "tls", "identity", "users", "labels", "timeouts", "retry_after",
					     "down_hold", "cacerts_cache", "max_connections", "on_enroll", NULL };
	if (!lua_istable(L, t)) {
		eg_conf_fail(r, NULL, "est.lua must return a table");
		goto fail;
	}
	if (eg_conf_check_keys(r, t, known, "est") < 0)
		goto fail;

	if (eg_conf_listen(r, t, c->listen[0], sizeof(c->listen[0]), EG_MAX_LISTEN, &c->nlisten) < 0)
		goto fail;

	lua_getfield(L, t, "tls");
	int tt = lua_gettop(L);
	static const char *const tls_known[] = { "cert", "key", "passphrase_file", "device_ca", NULL };
	if (!lua_istable(L, tt)) {
		eg_conf_fail(r, "tls", "tls: expected { cert = ..., key = ..., device_ca = ... }");
		goto fail;
	}
	if (eg_conf_check_keys(r, tt, tls_known, "tls") < 0 ||
	    eg_conf_path(r, tt, "cert", cert, sizeof(cert), "tls") < 0 ||
	    eg_conf_path(r, tt, "key", key, sizeof(key), "tls") < 0 ||
	    eg_conf_path(r, tt, "passphrase_file", pass, sizeof(pass), "tls") < 0 ||
	    eg_conf_path(r, tt, "device_ca", device_ca, sizeof(device_ca), "tls") < 0)
		goto fail;
	lua_pop(L, 1);
	if (!cert[0] || !key[0]) {
		eg_conf_fail(r, "tls", "tls: cert and key are required");
		goto fail;
	}
	char why[512];
	c->server_ctx = eg_tls_server_ctx(cert, key, pass, device_ca, why, sizeof(why));
	if (!c->server_ctx) {
		eg_conf_fail(r, "tls", "tls: %s", why);
		goto fail;
	}

	if (eg_conf_identity(r, t, &id, &have_id) < 0 || parse_users(r, t, c) < 0)
		goto fail;

	if (eg_conf_timeouts(r, t, &c->timeouts) < 0)
		goto fail;
	if (eg_conf_number(r, t, "retry_after", 1, 86400, &retry_after, "est") < 0 ||
	    eg_conf_number(r, t, "down_hold", 0, 3600, &c->down_hold, "est") < 0 ||
	    eg_conf_number(r, t, "cacerts_cache", 0, 86400 * 30, &c->cacerts_cache, "est") < 0 ||
	    eg_conf_number(r, t, "max_connections", 1, 1000000, &max_connections, "est") < 0)
		goto fail;
	c->retry_after = (int)retry_after;
	c->max_connections = (int)max_connections;

	lua_getfield(L, t, "labels");
	int lt = lua_gettop(L);
	if (!lua_istable(L, lt)) {
		eg_conf_fail(r, "labels", "labels: expected { [\"\"] = {...}, LABEL = {...} }");
		goto fail;
	}
	c->labels = calloc(EG_EST_MAX_LABELS, sizeof(*c->labels));
	if (!c->labels) {
		eg_conf_fail(r, NULL, "out of memory");
		goto fail;
	}
	lua_pushnil(L);
	while (lua_next(L, lt)) {
		const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int ok = name && strlen(name) < sizeof(c->labels[0].name);
		for (const char *p = name; ok && *p; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
			     *p == '_' || *p == '.';
		if (!ok || c->nlabels >= EG_EST_MAX_LABELS) {
			eg_conf_fail(r, "labels", "labels: a label is a name of letters, digits, '-', '_', '.' (at most %d labels)",
			     EG_EST_MAX_LABELS);
			goto fail;
		}
		struct eg_est_label *lb = &c->labels[c->nlabels++];
		snprintf(lb->name, sizeof(lb->name), "%s", name);
		if (parse_label(r, lua_gettop(L), have_id ? &id : NULL, lb) < 0)
			goto fail;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (c->nlabels == 0) {
		eg_conf_fail(r, "labels", "labels: at least one label (\"\" is the unlabelled path)");
		goto fail;
	}
	lua_getfield(L, t, "on_enroll");
	int has_hook = lua_isfunction(L, -1);
	lua_pop(L, 1);
	if (!has_hook) {
		eg_conf_fail(r, "on_enroll",
		     "on_enroll: a function is required (e.g. require(\"policies.est\").policy{}): requests are never relayed unchecked");
		goto fail;
	}
	lua_settop(L, top);
	*out = c;
	return 0;
fail:
	lua_settop(L, top);
	eg_est_conf_free(c);
	return -1;
}

static int read_error(lua_State *L, int map, const char *code, struct eg_est_error *e, struct eg_load_error *err)
{
	struct eg_conf_reader rd = { L, "est", "policies/errors.lua", "", err }, *r = &rd;
	int rc = 0;
	lua_getfield(L, map, code);
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "status");
		lua_getfield(L, -2, "text");
		lua_Integer st = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
		const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (st < 400 || st > 599 || !text || strlen(text) >= sizeof(e->text) || strpbrk(text, "\r\n")) {
			rc = eg_conf_fail(r, code, "errors.map.%s: needs status 400-599 and a one-line text", code);
		} else {
			e->status = (int)st;
			snprintf(e->text, sizeof(e->text), "%s", text);
		}
		lua_pop(L, 2);
	}
	lua_pop(L, 1);
	return rc;
}

int eg_est_conf_errors(lua_State *L, int idx, struct eg_est_conf *c, struct eg_load_error *err)
{
	int t = lua_absindex(L, idx);
	if (!lua_istable(L, t))
		return 0;
	lua_getfield(L, t, "map");
	int map = lua_gettop(L);
	int rc = 0;
	if (lua_istable(L, map))
		rc = read_error(L, map, "est_upstream_down", &c->err_upstream_down, err) < 0 ||
		     read_error(L, map, "est_upstream_timeout", &c->err_upstream_timeout, err) < 0 ||
		     read_error(L, map, "est_upstream_bad_answer", &c->err_bad_answer, err) < 0 ? -1 : 0;
	lua_settop(L, map - 1);
	return rc;
}

void eg_est_conf_free(struct eg_est_conf *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->server_ctx);
	for (int i = 0; c->labels && i < c->nlabels; i++)
		SSL_CTX_free(c->labels[i].client_ctx);
	free(c->labels);
	if (c->users)
		OPENSSL_cleanse(c->users, EG_EST_MAX_USERS * sizeof(*c->users));
	free(c->users);
	free(c);
}

const struct eg_est_label *eg_est_conf_label(const struct eg_est_conf *c, const char *name, size_t n)
{
	for (int i = 0; i < c->nlabels; i++)
		if (strlen(c->labels[i].name) == n && memcmp(c->labels[i].name, name, n) == 0)
			return &c->labels[i];
	return NULL;
}

/* pbkdf2-sha256$ITER$SALT$HASH with SALT and HASH in base64 */
static int pbkdf2(const char *password, const unsigned char *salt, size_t saltlen, unsigned iter, unsigned char *out,
		  size_t outlen)
{
	return PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)saltlen, (int)iter, EVP_sha256(), (int)outlen,
				 out) == 1 ? 0 : -1;
}

const char *eg_est_user_hash(const struct eg_est_conf *c, const char *user)
{
	for (int i = 0; i < c->nusers; i++)
		if (strcmp(c->users[i].name, user) == 0)
			return c->users[i].hash;
	return NULL;
}

int eg_est_verify_hash(const char *hash, const char *password)
{
	unsigned iter = 0;
	char salt64[100], hash64[100];
	unsigned char salt[80], want[80], got[80];
	if (sscanf(hash, "pbkdf2-sha256$%u$%99[^$]$%99s", &iter, salt64, hash64) != 3)
		return 0;
	long sl = eg_base64_decode_ws(salt64, strlen(salt64), salt, sizeof(salt));
	long hl = eg_base64_decode_ws(hash64, strlen(hash64), want, sizeof(want));
	if (sl <= 0 || hl < 16 || pbkdf2(password, salt, (size_t)sl, iter, got, (size_t)hl) < 0)
		return 0;
	int ok = CRYPTO_memcmp(got, want, (size_t)hl) == 0;
	OPENSSL_cleanse(got, sizeof(got));
	return ok;
}

int eg_est_hash_password(const char *password, char *out, size_t cap)
{
	unsigned char salt[16], hash[32];
	unsigned char salt64[32], hash64[48];
	if (RAND_bytes(salt, sizeof(salt)) != 1 || pbkdf2(password, salt, sizeof(salt), PBKDF2_ITER_DEFAULT, hash, sizeof(hash)) < 0)
		return -1;
	EVP_EncodeBlock(salt64, salt, sizeof(salt));
	EVP_EncodeBlock(hash64, hash, sizeof(hash));
	int n = snprintf(out, cap, "pbkdf2-sha256$%d$%s$%s", PBKDF2_ITER_DEFAULT, salt64, hash64);
	OPENSSL_cleanse(hash, sizeof(hash));
	return n > 0 && (size_t)n < cap ? 0 : -1;
}
