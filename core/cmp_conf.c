/* cmp_conf.c: compiles <conf>/cmp.lua into struct eg_cmp_conf; see cmp_conf.h. */
#include "cmp_conf.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/cmp.h>
#include <openssl/crypto.h>

#include "cmp_backend.h"
#include "cmp_msg.h"
#include "conf_read.h"
#include "log.h"
#include "policy.h"
#include "tls.h"

static const char *const reason_names[EG_CMP_R_COUNT] = {
	"bad_message", "unprotected", "protection_not_allowed", "protection_unsupported", "mac_unknown_key",
	"mac_failed", "signature_no_cert", "signature_failed", "signer_untrusted", "signer_revoked",
	"revocation_unknown", "no_chains", "type_not_allowed", "bad_template", "bad_pop", "denied", "policy_error",
	"upstream_down", "upstream_timeout",
};

const char *eg_cmp_reason_name(enum eg_cmp_reason r)
{
	return r >= 0 && r < EG_CMP_R_COUNT ? reason_names[r] : "policy_error";
}

/* The message types an alias accepts when cmp.lua does not say: every request a client sends
 * in the transactions RFC 9483 describes. */
static const char *const default_types[] = { "ir", "cr", "p10cr", "kur", "rr", "certConf", "pollReq", "genm", NULL };

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* types = { "ir", "cr", ... } */
static int parse_types(const struct eg_conf_reader *r, int t, struct eg_cmp_alias *a, const char *where)
{
	lua_State *L = r->L;
	a->types = 0;
	lua_getfield(L, t, "types");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		for (int i = 0; default_types[i]; i++)
			a->types |= 1u << eg_cmp_type_by_name(default_types[i]);
		return 0;
	}
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "types", "%s.types: expected a list of message types (\"ir\", \"cr\", ...)", where);
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		int type = eg_cmp_type_by_name(name);
		if (type < 0) {
			char needle[64];
			snprintf(needle, sizeof(needle), "%s", name[0] ? name : "types");
			lua_pop(L, 2);
			return eg_conf_fail(r, needle, "%s.types: unknown message type '%s' (ir, cr, p10cr, kur, rr, certConf, "
					    "pollReq, genm, ...)", where, needle);
		}
		a->types |= 1u << type;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

/* protection = { "mac", "signature", "none" } */
static int parse_protection(const struct eg_conf_reader *r, int t, struct eg_cmp_alias *a, const char *where)
{
	lua_State *L = r->L;
	a->protection = EG_CMP_ALLOW_MAC | EG_CMP_ALLOW_SIGNATURE;
	lua_getfield(L, t, "protection");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "protection", "%s.protection: expected a list of \"mac\", \"signature\", \"none\"", where);
	}
	a->protection = 0;
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		int bit = strcmp(m, "mac") == 0 ? EG_CMP_ALLOW_MAC : strcmp(m, "signature") == 0 ? EG_CMP_ALLOW_SIGNATURE
			: strcmp(m, "none") == 0 ? EG_CMP_ALLOW_NONE : 0;
		lua_pop(L, 1);
		if (!bit) {
			lua_pop(L, 1);
			return eg_conf_fail(r, "protection", "%s.protection: unknown kind (use \"mac\", \"signature\" or \"none\")",
					    where);
		}
		a->protection |= bit;
	}
	lua_pop(L, 1);
	return 0;
}

/* mac = { ["keyId"] = "secret" or { file = "secrets/keyId" }, ... } */
static int parse_mac(const struct eg_conf_reader *r, int t, struct eg_cmp_alias *a, const char *where)
{
	lua_State *L = r->L;
	lua_getfield(L, t, "mac");
	int mt = lua_gettop(L);
	if (lua_isnil(L, mt)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, mt)) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "mac", "%s.mac: expected { [\"keyId\"] = \"secret\" or { file = ... } }", where);
	}
	a->mac = calloc(EG_CMP_MAX_MAC_KEYS, sizeof(*a->mac));
	if (!a->mac) {
		lua_pop(L, 1);
		return eg_conf_fail(r, NULL, "out of memory");
	}
	lua_pushnil(L);
	while (lua_next(L, mt)) {
		size_t kl = 0;
		const char *kid = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &kl) : NULL;
		char needle[64];
		snprintf(needle, sizeof(needle), "%s", kid ? kid : "mac");
		if (!kid || kl == 0 || kl > sizeof(a->mac[0].kid) || a->nmac >= EG_CMP_MAX_MAC_KEYS) {
			lua_settop(L, mt - 1);
			return eg_conf_fail(r, needle, "%s.mac: keyIds are strings of 1 to %zu bytes (at most %d keys)", where,
					    sizeof(a->mac[0].kid), EG_CMP_MAX_MAC_KEYS);
		}
		struct eg_cmp_mac_key *k = &a->mac[a->nmac];
		memcpy(k->kid, kid, kl);
		k->kid_len = kl;
		int ok = 0;
		if (lua_type(L, -1) == LUA_TSTRING) {
			size_t sl = 0;
			const char *sec = lua_tolstring(L, -1, &sl);
			ok = sl > 0 && sl <= sizeof(k->secret);
			if (ok) {
				memcpy(k->secret, sec, sl);
				k->secret_len = sl;
			}
		} else if (lua_istable(L, -1)) {
			char path[512];
			static const char *const known[] = { "file", NULL };
			char w[200];
			snprintf(w, sizeof(w), "%s.mac[\"%s\"]", where, needle);
			if (eg_conf_check_keys(r, lua_gettop(L), known, w) < 0 ||
			    eg_conf_path(r, lua_gettop(L), "file", path, sizeof(path), w) < 0) {
				lua_settop(L, mt - 1);
				return -1;
			}
			if (!path[0] || eg_conf_read_secret(path, k->secret, sizeof(k->secret), &k->secret_len) < 0) {
				lua_settop(L, mt - 1);
				return eg_conf_fail(r, needle, "%s.mac[\"%s\"].file: cannot read a secret (one line, 1 to %zu bytes) "
						    "from '%s'", where, needle, sizeof(k->secret), path);
			}
			ok = 1;
		}
		if (!ok) {
			lua_settop(L, mt - 1);
			return eg_conf_fail(r, needle, "%s.mac[\"%s\"]: expected the secret (1 to %zu bytes) or { file = ... }",
					    where, needle, sizeof(k->secret));
		}
		a->nmac++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

/* Newest modification time of the CRL path (a file, or the files of a directory); 0 if none. */
static time_t crl_mtime(const char *path)
{
	struct stat sb;
	if (!path[0] || stat(path, &sb) != 0)
		return 0;
	time_t newest = sb.st_mtime;
	if (!S_ISDIR(sb.st_mode))
		return newest;
	DIR *d = opendir(path);
	struct dirent *e;
	char file[1024];
	while (d && (e = readdir(d)) != NULL) {
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		if (e->d_name[0] != '.' && stat(file, &sb) == 0 && sb.st_mtime > newest)
			newest = sb.st_mtime;
	}
	if (d)
		closedir(d);
	return newest;
}

/* signature = { issuers = "file or dir", crls = "file or dir", crl_refresh = 60 } */
static int parse_signature(const struct eg_conf_reader *r, int t, struct eg_cmp_alias *a, const char *where)
{
	lua_State *L = r->L;
	a->crl_refresh = 60;
	lua_getfield(L, t, "signature");
	int st = lua_gettop(L);
	if (lua_isnil(L, st)) {
		lua_pop(L, 1);
		return 0;
	}
	char w[128];
	snprintf(w, sizeof(w), "%s.signature", where);
	static const char *const known[] = { "issuers", "crls", "crl_refresh", NULL };
	if (!lua_istable(L, st)) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "signature", "%s: expected { issuers = ..., crls = ... }", w);
	}
	if (eg_conf_check_keys(r, st, known, w) < 0 || eg_conf_path(r, st, "issuers", a->issuers, sizeof(a->issuers), w) < 0 ||
	    eg_conf_path(r, st, "crls", a->crls, sizeof(a->crls), w) < 0 ||
	    eg_conf_number(r, st, "crl_refresh", 1, 86400, &a->crl_refresh, w) < 0) {
		lua_pop(L, 1);
		return -1;
	}
	lua_pop(L, 1);
	if (!a->issuers[0]) {
		if (a->crls[0])
			return eg_conf_fail(r, "crls", "%s: crls without issuers", w);
		return 0; /* signature-protected messages are then answered systemUnavail (no_chains) */
	}
	char why[600];
	a->trust = eg_cmp_trust_store(a->issuers, a->crls[0] ? a->crls : NULL, why, sizeof(why));
	if (!a->trust)
		return eg_conf_fail(r, "issuers", "%s: %s", w, why);
	a->crl_mtime = crl_mtime(a->crls);
	a->crl_checked_at = mono();
	return 0;
}

static int parse_alias(const struct eg_conf_reader *r, int t, const struct eg_tls_identity *id, struct eg_cmp_alias *a)
{
	lua_State *L = r->L;
	char where[96], trust[512];
	snprintf(where, sizeof(where), "aliases[\"%s\"]", a->name);
	static const char *const known[] = { "upstreams", "trust", "verify_name", "backend", "types", "protection", "mac",
					     "signature", NULL };
	if (!lua_istable(L, t))
		return eg_conf_fail(r, a->name, "%s: expected a table", where);
	if (eg_conf_check_keys(r, t, known, where) < 0 || eg_conf_path(r, t, "trust", trust, sizeof(trust), where) < 0 ||
	    parse_types(r, t, a, where) < 0 || parse_protection(r, t, a, where) < 0 || parse_mac(r, t, a, where) < 0 ||
	    parse_signature(r, t, a, where) < 0 ||
	    eg_conf_upstreams(r, t, where, 1, a->up, EG_CMP_MAX_UPSTREAMS, &a->nup) < 0)
		return -1;
	lua_getfield(L, t, "verify_name");
	a->verify_name = lua_isnil(L, -1) ? 1 : lua_toboolean(L, -1);
	lua_pop(L, 1);
	lua_getfield(L, t, "backend");
	const char *backend = lua_isnil(L, -1) ? "http" : lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
	a->backend = eg_cmp_backend_find(backend);
	lua_pop(L, 1);
	if (a->backend < 0)
		return eg_conf_fail(r, "backend", "%s.backend: unknown backend (this version has \"http\")", where);
	int any_tls = 0;
	for (int i = 0; i < a->nup; i++)
		any_tls |= a->up[i].tls;
	if (any_tls) {
		char why[512];
		a->client_ctx = eg_tls_client_ctx(trust, id, why, sizeof(why));
		if (!a->client_ctx)
			return eg_conf_fail(r, a->name, "%s: %s", where, why);
	}
	return 0;
}

/* A path prefix: "/" ... "/", printable, no "..". */
static int good_prefix(const char *p)
{
	size_t n = strlen(p);
	if (n < 2 || p[0] != '/' || p[n - 1] != '/' || strstr(p, ".."))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '?' || p[i] == '#' || p[i] == '%')
			return 0;
	return 1;
}

int eg_cmp_conf_load(lua_State *L, int idx, const char *conf_dir, const char *file, struct eg_cmp_conf **out,
		     struct eg_load_error *err)
{
	int t = lua_absindex(L, idx);
	int top = lua_gettop(L);
	struct eg_conf_reader rd = { L, "cmp", file, conf_dir, err }, *r = &rd;
	struct eg_cmp_conf *c = calloc(1, sizeof(*c));
	struct eg_tls_identity id;
	int have_id = 0;
	*out = NULL;
	if (!c)
		return eg_conf_fail(r, NULL, "out of memory");
	c->down_hold = 30;
	for (int i = 0; i < EG_CMP_R_COUNT; i++) {
		c->errors[i].failinfo = i == EG_CMP_R_UPSTREAM_DOWN || i == EG_CMP_R_UPSTREAM_TIMEOUT ||
					i == EG_CMP_R_REVOCATION_UNKNOWN || i == EG_CMP_R_NO_CHAINS
				      ? OSSL_CMP_PKIFAILUREINFO_systemUnavail : OSSL_CMP_PKIFAILUREINFO_badRequest;
		snprintf(c->errors[i].text, sizeof(c->errors[i].text), "%s", reason_names[i]);
	}
	static const char *const known[] = { "listen", "tls", "identity", "legacy_prefix", "default_alias", "aliases",
					     "timeouts", "down_hold", "on_message", NULL };
	if (!lua_istable(L, t)) {
		eg_conf_fail(r, NULL, "cmp.lua must return a table");
		goto fail;
	}
	if (eg_conf_check_keys(r, t, known, "cmp") < 0 ||
	    eg_conf_listen(r, t, c->listen[0], sizeof(c->listen[0]), EG_MAX_LISTEN, &c->nlisten) < 0)
		goto fail;

	lua_getfield(L, t, "tls");
	if (!lua_isnil(L, -1)) {
		int tt = lua_gettop(L);
		char cert[512], key[512], pass[512], why[512];
		static const char *const tls_known[] = { "cert", "key", "passphrase_file", NULL };
		if (!lua_istable(L, tt)) {
			eg_conf_fail(r, "tls", "tls: expected { cert = ..., key = ... }");
			goto fail;
		}
		if (eg_conf_check_keys(r, tt, tls_known, "tls") < 0 || eg_conf_path(r, tt, "cert", cert, sizeof(cert), "tls") < 0 ||
		    eg_conf_path(r, tt, "key", key, sizeof(key), "tls") < 0 ||
		    eg_conf_path(r, tt, "passphrase_file", pass, sizeof(pass), "tls") < 0)
			goto fail;
		if (!cert[0] || !key[0]) {
			eg_conf_fail(r, "tls", "tls: cert and key are required");
			goto fail;
		}
		c->server_ctx = eg_tls_server_ctx(cert, key, pass, "", why, sizeof(why));
		if (!c->server_ctx) {
			eg_conf_fail(r, "tls", "tls: %s", why);
			goto fail;
		}
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "legacy_prefix");
	if (!lua_isnil(L, -1)) {
		const char *p = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (strlen(p) >= sizeof(c->legacy_prefix) || !good_prefix(p) || strncmp(p, "/.well-known/", 13) == 0) {
			eg_conf_fail(r, "legacy_prefix", "legacy_prefix: expected a path like \"/ejbca/publicweb/cmp/\"");
			goto fail;
		}
		snprintf(c->legacy_prefix, sizeof(c->legacy_prefix), "%s", p);
	}
	lua_pop(L, 1);

	if (eg_conf_identity(r, t, &id, &have_id) < 0)
		goto fail;
	if (eg_conf_timeouts(r, t, &c->timeouts) < 0)
		goto fail;
	if (eg_conf_number(r, t, "down_hold", 0, 3600, &c->down_hold, "cmp") < 0)
		goto fail;

	lua_getfield(L, t, "aliases");
	int at = lua_gettop(L);
	if (!lua_istable(L, at)) {
		eg_conf_fail(r, "aliases", "aliases: expected { NAME = { upstreams = { ... }, ... }, ... }");
		goto fail;
	}
	c->aliases = calloc(EG_CMP_MAX_ALIASES, sizeof(*c->aliases));
	if (!c->aliases) {
		eg_conf_fail(r, NULL, "out of memory");
		goto fail;
	}
	lua_pushnil(L);
	while (lua_next(L, at)) {
		const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int ok = name && name[0] && strlen(name) < sizeof(c->aliases[0].name);
		for (const char *p = name; ok && *p; p++)
			ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '-' ||
			     *p == '_' || *p == '.';
		if (!ok || c->naliases >= EG_CMP_MAX_ALIASES) {
			eg_conf_fail(r, "aliases", "aliases: an alias is a name of letters, digits, '-', '_', '.' (at most %d)",
				     EG_CMP_MAX_ALIASES);
			goto fail;
		}
		struct eg_cmp_alias *a = &c->aliases[c->naliases++];
		snprintf(a->name, sizeof(a->name), "%s", name);
		if (parse_alias(r, lua_gettop(L), have_id ? &id : NULL, a) < 0)
			goto fail;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (c->naliases == 0) {
		eg_conf_fail(r, "aliases", "aliases: at least one alias");
		goto fail;
	}

	lua_getfield(L, t, "default_alias");
	if (!lua_isnil(L, -1)) {
		const char *d = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (!eg_cmp_conf_alias(c, d, strlen(d))) {
			eg_conf_fail(r, "default_alias", "default_alias: '%s' is not one of the aliases", d);
			goto fail;
		}
		snprintf(c->default_alias, sizeof(c->default_alias), "%s", d);
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "on_message");
	int has_hook = lua_isfunction(L, -1);
	lua_pop(L, 1);
	if (!has_hook) {
		eg_conf_fail(r, "on_message", "on_message: a function is required (e.g. require(\"policies.cmp\").policy{}): "
			     "messages are never relayed unchecked");
		goto fail;
	}
	lua_settop(L, top);
	*out = c;
	return 0;
fail:
	lua_settop(L, top);
	eg_cmp_conf_free(c);
	return -1;
}

int eg_cmp_conf_errors(lua_State *L, int idx, struct eg_cmp_conf *c, struct eg_load_error *err)
{
	struct eg_conf_reader rd = { L, "cmp", "policies/errors.lua", "", err }, *r = &rd;
	int t = lua_absindex(L, idx);
	if (!lua_istable(L, t))
		return 0;
	lua_getfield(L, t, "map");
	int map = lua_gettop(L);
	int rc = 0;
	for (int i = 0; rc == 0 && lua_istable(L, map) && i < EG_CMP_R_COUNT; i++) {
		char key[64];
		snprintf(key, sizeof(key), "cmp_%s", reason_names[i]);
		lua_getfield(L, map, key);
		if (lua_istable(L, -1)) {
			lua_getfield(L, -1, "failinfo");
			lua_getfield(L, -2, "text");
			const char *fi = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
			const char *text = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
			int bit = eg_cmp_failinfo_bit(fi);
			if (bit < 0 || !text || !text[0] || strlen(text) >= sizeof(c->errors[i].text) || strpbrk(text, "\r\n")) {
				rc = eg_conf_fail(r, key, "errors.map.%s: needs failinfo (a PKIFailureInfo name such as "
						  "\"badRequest\") and a one-line text", key);
			} else {
				c->errors[i].failinfo = bit;
				snprintf(c->errors[i].text, sizeof(c->errors[i].text), "%s", text);
			}
			lua_pop(L, 2);
		}
		lua_pop(L, 1);
	}
	lua_settop(L, map - 1);
	return rc;
}

void eg_cmp_conf_free(struct eg_cmp_conf *c)
{
	if (!c)
		return;
	SSL_CTX_free(c->server_ctx);
	for (int i = 0; c->aliases && i < c->naliases; i++) {
		struct eg_cmp_alias *a = &c->aliases[i];
		SSL_CTX_free(a->client_ctx);
		X509_STORE_free(a->trust);
		if (a->mac)
			OPENSSL_cleanse(a->mac, EG_CMP_MAX_MAC_KEYS * sizeof(*a->mac));
		free(a->mac);
	}
	free(c->aliases);
	free(c);
}

struct eg_cmp_alias *eg_cmp_conf_alias(const struct eg_cmp_conf *c, const char *name, size_t n)
{
	for (int i = 0; i < c->naliases; i++)
		if (strlen(c->aliases[i].name) == n && memcmp(c->aliases[i].name, name, n) == 0)
			return &c->aliases[i];
	return NULL;
}

const struct eg_cmp_mac_key *eg_cmp_alias_mac_key(const struct eg_cmp_alias *a, const unsigned char *kid, size_t n)
{
	for (int i = 0; i < a->nmac; i++)
		if (a->mac[i].kid_len == n && CRYPTO_memcmp(a->mac[i].kid, kid, n) == 0)
			return &a->mac[i];
	return NULL;
}

X509_STORE *eg_cmp_alias_trust(struct eg_cmp_alias *a, const char **crl_error)
{
	*crl_error = a->crl_error[0] ? a->crl_error : NULL;
	if (!a->trust || !a->crls[0])
		return a->trust;
	double now = mono();
	if (now - a->crl_checked_at < a->crl_refresh)
		return a->trust;
	a->crl_checked_at = now;
	time_t m = crl_mtime(a->crls);
	if (m == a->crl_mtime && !a->crl_error[0])
		return a->trust;
	char why[600];
	X509_STORE *fresh = eg_cmp_trust_store(a->issuers, a->crls, why, sizeof(why));
	if (!fresh) {
		/* newer revocation data that cannot be read (a half-written file, a broken one): the
		 * old CRLs could say "good" for a signer the new ones revoke. Unknown until a re-read
		 * works; tried again at every look. */
		if (!a->crl_error[0])
			eg_log(EG_LOG_WARN, "cmp", "alias '%s': CRLs changed and cannot be re-read (revocation unknown "
			       "until they can): %s", a->name, why);
		snprintf(a->crl_error, sizeof(a->crl_error), "the CRLs changed and cannot be re-read: %.250s", why);
		*crl_error = a->crl_error;
		return a->trust;
	}
	X509_STORE_free(a->trust);
	a->trust = fresh;
	a->crl_mtime = m;
	a->crl_error[0] = '\0';
	*crl_error = NULL;
	eg_log(EG_LOG_INFO, "cmp", "alias '%s': CRLs re-read from %s", a->name, a->crls);
	return a->trust;
}
