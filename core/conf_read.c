/* conf_read.c: configuration tables from Lua into C; see conf_read.h. */
#include "conf_read.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "policy.h"

int eg_conf_fail(const struct eg_conf_reader *r, const char *needle, const char *fmt, ...)
{
	va_list ap;
	struct eg_load_error *e = r->err;
	snprintf(e->stage, sizeof(e->stage), "%s", r->stage);
	snprintf(e->file, sizeof(e->file), "%s", r->file);
	e->line = needle ? eg_find_line(r->file, needle) : 0;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return -1;
}

int eg_conf_check_keys(const struct eg_conf_reader *r, int t, const char *const *known, const char *where)
{
	lua_State *L = r->L;
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
			return eg_conf_fail(r, key, "%s: unknown key '%s'", where, key);
		}
	}
	return 0;
}

int eg_conf_path(const struct eg_conf_reader *r, int t, const char *key, char *out, size_t cap, const char *where)
{
	lua_State *L = r->L;
	out[0] = '\0';
	lua_getfield(L, t, key);
	int ty = lua_type(L, -1);
	if (ty == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	if (ty != LUA_TSTRING || lua_rawlen(L, -1) == 0) {
		lua_pop(L, 1);
		return eg_conf_fail(r, key, "%s.%s: expected a file name", where, key);
	}
	const char *v = lua_tostring(L, -1);
	int n = v[0] == '/' ? snprintf(out, cap, "%s", v) : snprintf(out, cap, "%s/%s", r->conf_dir, v);
	lua_pop(L, 1);
	if (n < 0 || (size_t)n >= cap)
		return eg_conf_fail(r, key, "%s.%s: path too long", where, key);
	return 0;
}

int eg_conf_number(const struct eg_conf_reader *r, int t, const char *key, double lo, double hi, double *out,
		   const char *where)
{
	lua_State *L = r->L;
	lua_getfield(L, t, key);
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1) || lua_tonumber(L, -1) < lo || lua_tonumber(L, -1) > hi) {
			lua_pop(L, 1);
			return eg_conf_fail(r, key, "%s.%s: expected a number from %g to %g", where, key, lo, hi);
		}
		*out = lua_tonumber(L, -1);
	}
	lua_pop(L, 1);
	return 0;
}

int eg_conf_timeouts(const struct eg_conf_reader *r, int t, struct eg_upstream_timeouts *to)
{
	static const char *const known[] = { "connect", "tls", "response", NULL };
	lua_State *L = r->L;
	*to = (struct eg_upstream_timeouts){ .connect = 10, .tls = 10, .response = 60 };
	lua_getfield(L, t, "timeouts");
	int rc = 0, tt = lua_gettop(L);
	if (!lua_isnil(L, tt) && !lua_istable(L, tt))
		rc = eg_conf_fail(r, "timeouts", "timeouts: expected a table { connect, tls, response }");
	else if (lua_istable(L, tt) &&
		 (eg_conf_check_keys(r, tt, known, "timeouts") < 0 ||
		  eg_conf_number(r, tt, "connect", 0.1, 300, &to->connect, "timeouts") < 0 ||
		  eg_conf_number(r, tt, "tls", 0.1, 300, &to->tls, "timeouts") < 0 ||
		  eg_conf_number(r, tt, "response", 0.1, 3600, &to->response, "timeouts") < 0))
		rc = -1;
	lua_pop(L, 1);
	return rc;
}

int eg_conf_listen(const struct eg_conf_reader *r, int t, char *listen, size_t cap, int max, int *n)
{
	lua_State *L = r->L;
	*n = 0;
	lua_getfield(L, t, "listen");
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0 || lua_rawlen(L, -1) > (size_t)max) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "listen", "listen: expected a list of 1 to %d \"ADDR:PORT\"", max);
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		if (lua_type(L, -1) != LUA_TSTRING || lua_rawlen(L, -1) >= cap) {
			lua_pop(L, 2);
			return eg_conf_fail(r, "listen", "listen: expected \"ADDR:PORT\" strings");
		}
		snprintf(listen + (size_t)(*n)++ * cap, cap, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

int eg_conf_identity(const struct eg_conf_reader *r, int t, struct eg_tls_identity *id, int *have)
{
	lua_State *L = r->L;
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
		eg_conf_fail(r, "identity", "identity: expected a table");
		goto out;
	}
	if (eg_conf_check_keys(r, it, known, "identity") < 0 ||
	    eg_conf_path(r, it, "cert", id->cert, sizeof(id->cert), "identity") < 0 ||
	    eg_conf_path(r, it, "key", id->key, sizeof(id->key), "identity") < 0 ||
	    eg_conf_path(r, it, "passphrase_file", id->passphrase_file, sizeof(id->passphrase_file), "identity") < 0 ||
	    eg_conf_path(r, it, "pkcs12", id->pkcs12, sizeof(id->pkcs12), "identity") < 0 ||
	    eg_conf_path(r, it, "password_file", pw, sizeof(pw), "identity") < 0)
		goto out;
	if (id->pkcs12[0]) {
		if (id->cert[0] || id->key[0] || !pw[0]) {
			eg_conf_fail(r, "pkcs12", "identity: pkcs12 needs password_file, and no cert/key beside it");
			goto out;
		}
		snprintf(id->passphrase_file, sizeof(id->passphrase_file), "%s", pw);
	} else if (!id->cert[0] || !id->key[0]) {
		eg_conf_fail(r, "identity", "identity: needs cert and key (or pkcs12 and password_file)");
		goto out;
	}
	*have = 1;
	rc = 0;
out:
	lua_settop(L, it - 1);
	return rc;
}

int eg_conf_upstreams(const struct eg_conf_reader *r, int t, const char *where, int allow_plain,
		      struct eg_upstream *up, int max, int *n)
{
	lua_State *L = r->L;
	*n = 0;
	lua_getfield(L, t, "upstreams");
	if (!lua_istable(L, -1) || lua_rawlen(L, -1) == 0 || lua_rawlen(L, -1) > (size_t)max) {
		lua_pop(L, 1);
		return eg_conf_fail(r, "upstreams", "%s.upstreams: expected 1 to %d URLs", where, max);
	}
	for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
		lua_rawgeti(L, -1, i);
		const char *u = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (eg_upstream_parse(u, allow_plain, &up[*n]) < 0) {
			char needle[128];
			snprintf(needle, sizeof(needle), "%s", u);
			lua_pop(L, 2);
			return eg_conf_fail(r, needle[0] ? needle : "upstreams", "%s.upstreams[%lld]: expected %s://host[:port]/path",
					    where, (long long)i, allow_plain ? "http[s]" : "https");
		}
		(*n)++;
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

int eg_conf_read_secret(const char *path, unsigned char *out, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return -1;
	size_t n = fread(out, 1, cap, f);
	int too_long = n == cap && fgetc(f) != EOF;
	fclose(f);
	unsigned char *nl = memchr(out, '\n', n);
	if (nl)
		n = (size_t)(nl - out);
	if (n > 0 && out[n - 1] == '\r')
		n--;
	*len = n;
	return too_long || n == 0 ? -1 : 0;
}
