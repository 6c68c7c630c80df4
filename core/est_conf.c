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
#include "tls.h"

#define PBKDF2_ITER_DEFAULT 200000
#define PBKDF2_ITER_MIN 10000

static int fail(struct eg_load_error *e, const char *file, const char *needle, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int fail(struct eg_load_error *e, const char *file, const char *needle, const char *fmt, ...)
{
	va_list ap;
	snprintf(e->stage, sizeof(e->stage), "est");
	snprintf(e->file, sizeof(e->file), "%s", file);
	e->line = needle ? eg_find_line(file, needle) : 0;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

/* Every key of table t must be one of known. */
static int check_keys(lua_State *L, int t, const char *const *known, const char *where, const char *file,
		      struct eg_load_error *err)
{
	lua_pushnil(L);
	while (lua_next(L, t)) {
		lua_pop(L, 1);
		const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		int ok = 0;
		for (int i = 0; k && known[i]; i++)
			ok |= strcmp(k, known[i]) == 0;
		if (!ok) {
			char key[64];
			snprintf(key, sizeof(key), "%s", k ? k : "(non-string key)");
			lua_pop(L, 1);
			return fail(err, file, key, "%s: unknown key '%s'", where, key);
		}
	}
	return 0;
}

/* Optional string field t[key] as a path (relative to conf_dir) into out; "" if absent. */
static int get_path(lua_State *L, int t, const char *key, const char *conf_dir, char *out, size_t cap,
		    const char *where, const char *file, struct eg_load_error *err)
{
	out[0] = '\0';
	lua_getfield(L, t, key);
	int ty = lua_type(L, -1);
	if (ty == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (ty != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
		lua_pop(L, 1);
		return fail(err, file, key, "%s.%s: expected a file name", where, key);
	}
	const char *v = lua_tostring(L, -1);
	int n = v[0] == '/' ? snprintf(out, cap, "%s", v) : snprintf(out, cap, "%s/%s", conf_dir, v);
	lua_pop(L, 1);
	if (n < 0 || (size_t)n >= cap)
		return fail(err, file, key, "%s.%s: path too long", where, key);
	return 0;
}

static int get_number(lua_State *L, int t, const char *key, double lo, double hi, double *out, const char *where,
		      const char *file, struct eg_load_error *err)
{
	lua_getfield(L, t, key);
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < lo || lua_tonumber(L, -1) > hi) {
			lua_pop(L, 1);
			return fail(err, file, key, "%s.%s: expected a number from %g to %g", where, key, lo, hi);
		}
		*out = lua_tonumber(L, -1);
	}
	lua_pop(L, 1);
	return 0;
}

/* auth = { "cert" }, { "basic" }, { "cert", "basic" } (either) or { "cert+basic" } (both). */
static int parse_auth(lua_State *L, int t, int *auth, const char *where, const char *file, struct eg_load_error *err)
{
	*auth = EG_EST_AUTH_CERT;
	lua_getfield(L, t, "auth");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0) {
		lua_pop(L, 1);
		return fail(err, file, "auth", "%s.auth: expected a list of \"cert\", \"basic\", \"cert+basic\"", where);
	}
	*auth = 0;
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		int bit = strcmp(m, "cert") == 0 ? EG_EST_AUTH_CERT : strcmp(m, "basic") == 0 ? EG_EST_AUTH_BASIC
			: strcmp(m, "cert+basic") == 0 ? EG_EST_AUTH_BOTH : 0;
		lua_pop(L, 1);
		if (!bit) {
			lua_pop(L, 1);
			return fail(err, file, "auth", "%s.auth: unknown method (use \"cert\", \"basic\" or \"cert+basic\")", where);
		}
		*auth |= bit;
	}
	lua_pop(L, 1);
	return 0;
}

static int parse_identity(lua_State *L, int t, const char *conf_dir, struct eg_tls_identity *id, int *have,
			  const char *file, struct eg_load_error *err)
{
	*have = 0;
	memset(id, 0, sizeof(*id));
	lua_getfield(L, t, "identity");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	int it = lua_gettop(L);
	static const char *const known[] = { "cert", "key", "passphrase_file", "pkcs12", "password_file", NULL };
	int rc = -1;
	char pw[512];
	if (!lua_istable(L, it)) {
		fail(err, file, "identity", "identity: expected a table");
		goto out;
	}
	if (check_keys(L, it, known, "identity", file, err) < 0 ||
	    get_path(L, it, "cert", conf_dir, id->cert, sizeof(id->cert), "identity", file, err) < 0 ||
	    get_path(L, it, "key", conf_dir, id->key, sizeof(id->key), "identity", file, err) < 0 ||
	    get_path(L, it, "passphrase_file", conf_dir, id->passphrase_file, sizeof(id->passphrase_file), "identity", file,
		     err) < 0 ||
	    get_path(L, it, "pkcs12", conf_dir, id->pkcs12, sizeof(id->pkcs12), "identity", file, err) < 0 ||
	    get_path(L, it, "password_file", conf_dir, pw, sizeof(pw), "identity", file, err) < 0)
		goto out;
	if (id->pkcs12[0]) {
		if (id->cert[0] || id->key[0] || !pw[0]) {
			fail(err, file, "pkcs12", "identity: pkcs12 needs password_file, and no cert/key beside it");
			goto out;
		}
		snprintf(id->passphrase_file, sizeof(id->passphrase_file), "%s", pw);
	} else if (!id->cert[0] || !id->key[0]) {
		fail(err, file, "identity", "identity: needs cert and key (or pkcs12 and password_file)");
		goto out;
	}
	*have = 1;
	rc = 0;
out:
	lua_settop(L, it - 1);
	return rc;
}

static int parse_label(lua_State *L, int t, const char *conf_dir, const struct eg_tls_identity *id,
		       struct eg_est_label *lb, const char *file, struct eg_load_error *err)
{
	char where[96], trust[512];
	snprintf(where, sizeof(where), "labels[\"%s\"]", lb->name);
	static const char *const known[] = { "upstreams", "trust", "auth", "verify_name", NULL };
	if (!lua_istable(L, t))
		return fail(err, file, lb->name[0] ? lb->name : "labels", "%s: expected a table", where);
	if (check_keys(L, t, known, where, file, err) < 0 || parse_auth(L, t, &lb->auth, where, file, err) < 0 ||
	    get_path(L, t, "trust", conf_dir, trust, sizeof(trust), where, file, err) < 0)
		return -1;
	lua_getfield(L, t, "verify_name");
	lb->verify_name = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, t, "upstreams");
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0 || lua_rawlen(L, -1) > EG_EST_MAX_UPSTREAMS) {
		lua_pop(L, 1);
		return fail(err, file, "upstreams", "%s.upstreams: expected 1 to %d URLs", where, EG_EST_MAX_UPSTREAMS);
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		const char *u = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (eg_upstream_parse(u, 0, &lb->up[lb->nup]) < 0) {
			char needle[128];
			snprintf(needle, sizeof(needle), "%s", u);
			lua_pop(L, 2);
			return fail(err, file, needle[0] ? needle : "upstreams",
				    "%s.upstreams[%lld]: expected https://host[:port]/path", where, (long long)i);
		}
		lb->nup++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	char why[512];
	lb->client_ctx = eg_tls_client_ctx(trust, id, why, sizeof(why));
	if (!lb->client_ctx)
		return fail(err, file, lb->name[0] ? lb->name : "identity", "%s: %s", where, why);
	return 0;
}

static int parse_users(lua_State *L, int t, struct eg_est_conf *c, const char *file, struct eg_load_error *err)
{
	lua_getfield(L, t, "users");
	int ut = lua_gettop(L);
	if (lua_isnil(L, ut)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, ut)) {
		lua_pop(L, 1);
		return fail(err, file, "users", "users: expected { name = \"pbkdf2-sha256$...\" }");
	}
	c->users = calloc(EG_EST_MAX_USERS, sizeof(*c->users));
	if (!c->users)
		return fail(err, file, NULL, "out of memory");
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
			return fail(err, file, needle,
				    "users[%s]: expected a password hash from `enrollgate hash-password` (never the password)",
				    name ? name : "?");
		}
		if (c->nusers >= EG_EST_MAX_USERS) {
			lua_settop(L, ut - 1);
			return fail(err, file, "users", "users: more than %d", EG_EST_MAX_USERS);
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
	struct eg_tls_identity id;
	int have_id = 0;
	char cert[512], key[512], pass[512], device_ca[512];
	*out = NULL;
	if (!c)
		return fail(err, file, NULL, "out of memory");
	c->connect_timeout = 10;
	c->response_timeout = 60;
	c->down_hold = 30;
	c->cacerts_cache = 3600;
	c->err_upstream_down = (struct eg_est_error){ 503, "no upstream CA answered" };
	c->err_bad_answer = (struct eg_est_error){ 502, "upstream CA answered with something that is not a PKCS#7" };
	double retry_after = 60;
	static const char *const known[] = { "listen", "tls", "identity", "users", "labels", "timeouts", "retry_after",
					     "down_hold", "cacerts_cache", "on_enroll", NULL };
	if (!lua_istable(L, t)) {
		fail(err, file, NULL, "est.lua must return a table");
		goto fail;
	}
	if (check_keys(L, t, known, "est", file, err) < 0)
		goto fail;

	lua_getfield(L, t, "listen");
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0 || lua_rawlen(L, -1) > EG_MAX_LISTEN) {
		fail(err, file, "listen", "listen: expected a list of \"ADDR:PORT\"");
		goto fail;
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= sizeof(c->listen[0])) {
			fail(err, file, "listen", "listen: expected \"ADDR:PORT\" strings");
			goto fail;
		}
		snprintf(c->listen[c->nlisten++], sizeof(c->listen[0]), "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "tls");
	int tt = lua_gettop(L);
	static const char *const tls_known[] = { "cert", "key", "passphrase_file", "device_ca", NULL };
	if (!lua_istable(L, tt)) {
		fail(err, file, "tls", "tls: expected { cert = ..., key = ..., device_ca = ... }");
		goto fail;
	}
	if (check_keys(L, tt, tls_known, "tls", file, err) < 0 ||
	    get_path(L, tt, "cert", conf_dir, cert, sizeof(cert), "tls", file, err) < 0 ||
	    get_path(L, tt, "key", conf_dir, key, sizeof(key), "tls", file, err) < 0 ||
	    get_path(L, tt, "passphrase_file", conf_dir, pass, sizeof(pass), "tls", file, err) < 0 ||
	    get_path(L, tt, "device_ca", conf_dir, device_ca, sizeof(device_ca), "tls", file, err) < 0)
		goto fail;
	lua_pop(L, 1);
	if (!cert[0] || !key[0]) {
		fail(err, file, "tls", "tls: cert and key are required");
		goto fail;
	}
	char why[512];
	c->server_ctx = eg_tls_server_ctx(cert, key, pass, device_ca, why, sizeof(why));
	if (!c->server_ctx) {
		fail(err, file, "tls", "tls: %s", why);
		goto fail;
	}

	if (parse_identity(L, t, conf_dir, &id, &have_id, file, err) < 0 || parse_users(L, t, c, file, err) < 0)
		goto fail;

	lua_getfield(L, t, "timeouts");
	if (lua_istable(L, -1)) {
		int to = lua_gettop(L);
		static const char *const to_known[] = { "connect", "response", NULL };
		if (check_keys(L, to, to_known, "timeouts", file, err) < 0 ||
		    get_number(L, to, "connect", 0.1, 300, &c->connect_timeout, "timeouts", file, err) < 0 ||
		    get_number(L, to, "response", 0.1, 3600, &c->response_timeout, "timeouts", file, err) < 0)
			goto fail;
	}
	lua_pop(L, 1);
	if (get_number(L, t, "retry_after", 1, 86400, &retry_after, "est", file, err) < 0 ||
	    get_number(L, t, "down_hold", 0, 3600, &c->down_hold, "est", file, err) < 0 ||
	    get_number(L, t, "cacerts_cache", 0, 86400 * 30, &c->cacerts_cache, "est", file, err) < 0)
		goto fail;
	c->retry_after = (int)retry_after;

	lua_getfield(L, t, "labels");
	int lt = lua_gettop(L);
	if (!lua_istable(L, lt)) {
		fail(err, file, "labels", "labels: expected { [\"\"] = {...}, LABEL = {...} }");
		goto fail;
	}
	c->labels = calloc(EG_EST_MAX_LABELS, sizeof(*c->labels));
	if (!c->labels) {
		fail(err, file, NULL, "out of memory");
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
			fail(err, file, "labels", "labels: a label is a name of letters, digits, '-', '_', '.' (at most %d labels)",
			     EG_EST_MAX_LABELS);
			goto fail;
		}
		struct eg_est_label *lb = &c->labels[c->nlabels++];
		snprintf(lb->name, sizeof(lb->name), "%s", name);
		if (parse_label(L, lua_gettop(L), conf_dir, have_id ? &id : NULL, lb, file, err) < 0)
			goto fail;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (c->nlabels == 0) {
		fail(err, file, "labels", "labels: at least one label (\"\" is the unlabelled path)");
		goto fail;
	}
	lua_getfield(L, t, "on_enroll");
	int has_hook = lua_isfunction(L, -1);
	lua_pop(L, 1);
	if (!has_hook) {
		fail(err, file, "on_enroll",
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
	int rc = 0;
	lua_getfield(L, map, code);
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "status");
		lua_getfield(L, -2, "text");
		lua_Integer st = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : 0;
		const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (st < 400 || st > 599 || !text || strlen(text) >= sizeof(e->text) || strpbrk(text, "\r\n")) {
			rc = fail(err, "policies/errors.lua", code, "errors.map.%s: needs status 400-599 and a one-line text", code);
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
