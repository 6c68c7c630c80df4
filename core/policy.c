/* policy.c: building and checking policy generations (see policy.h): the sandboxed loader
 * (files, require, the locked globals), the policy table (allowlist, hooks, routes, est.lua and
 * cmp.lua) and a generation's life. enrollgate.lua's settings are read in policy_settings.c,
 * hooks run in policy_hooks.c; policy_int.h is what the three share. */
#include "policy.h"

#include <ctype.h>
#include <stdarg.h>
#include <strings.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "csr.h"
#include "digest.h"
#include "cmp_conf.h"
#include "cmp_msg.h"
#include "est_conf.h"
#include "ra.h"
#include "policy_int.h"

#define EG_POLICY_API_VERSION 1
#define EG_MAX_LUA_FILE (1024 * 1024)
#define EG_MAX_ROUTES 256
/* Worst-case matcher steps a string.find/match/gmatch/gsub call may risk (see pattern_guard). */
#define EG_PATTERN_MAX_STEPS 1e8

const char EG_POL_LOAD_CTX_KEY = 'L';
const char EG_POL_POLICY_KEY = 'P';
const char EG_POL_CTX_KEY = 'C';

/* ---- errors ---- */

void eg_pol_set_err(struct eg_load_error *e, const char *stage, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	snprintf(e->stage, sizeof(e->stage), "%s", stage);
	snprintf(e->file, sizeof(e->file), "%s", file ? file : "");
	e->line = line;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

/* Split a Lua error "file:line: message" into the error record. */
void eg_pol_set_err_lua(struct eg_load_error *e, const char *stage, const char *fallback_file, const char *msg)
{
	const char *p = msg;
	for (const char *c = strchr(p, ':'); c; c = strchr(c + 1, ':')) {
		const char *d = c + 1;
		int line = 0, nd = 0;
		while (isdigit((unsigned char)*d)) {
			line = line * 10 + (*d++ - '0');
			nd++;
		}
		if (nd && d[0] == ':' && d[1] == ' ' && nd < 9) {
			char file[256];
			size_t fl = (size_t)(c - p);
			if (fl >= sizeof(file))
				fl = sizeof(file) - 1;
			memcpy(file, p, fl);
			file[fl] = '\0';
			/* Lua shortens long chunk names to "...tail": name the file in full when the
			 * tail is the end of the file being loaded */
			size_t ffl = fallback_file ? strlen(fallback_file) : 0;
			if (fl > 3 && memcmp(file, "...", 3) == 0 && ffl >= fl - 3 &&
			    strcmp(fallback_file + ffl - (fl - 3), file + 3) == 0)
				snprintf(file, sizeof(file), "%s", fallback_file);
			eg_pol_set_err(e, stage, file, line, "%s", d + 2);
			return;
		}
	}
	eg_pol_set_err(e, stage, fallback_file, 0, "%s", msg);
}

/* Line of the first occurrence of needle in file (1-based), 0 if not found: lets errors
 * about table contents (which Lua cannot locate) point at the right line. */
int eg_find_line(const char *file, const char *needle)
{
	FILE *f = fopen(file, "r");
	char line[4096];
	int n = 0;
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		n++;
		if (strstr(line, needle)) {
			fclose(f);
			return n;
		}
	}
	fclose(f);
	return 0;
}

/* ---- memory cap ---- */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct eg_policy *p = ud;
	size_t old = ptr ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		p->mem_used -= old;
		return NULL;
	}
	if (nsize > old && p->mem_used + (nsize - old) > p->mem_limit) {
		if (p->in_hook)
			p->budget_failed = 2;
		return NULL;
	}
	void *np = realloc(ptr, nsize);
	if (np)
		p->mem_used = p->mem_used - old + nsize;
	return np;
}

size_t eg_policy_lua_memory(const struct eg_policy *p) { return p->mem_used; }

void eg_policy_collect(struct eg_policy *p)
{
	if (p && p->L)
		lua_gc(p->L, LUA_GCCOLLECT);
}

/* ---- file loading ---- */

static char *read_file(const char *path, size_t *len, const char **why)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	struct stat st;
	if (!f) {
		*why = strerror(errno);
		return NULL;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode)) {
		*why = "not a regular file";
		goto out;
	}
	if (st.st_size > EG_MAX_LUA_FILE) {
		*why = "file too large";
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		*why = "out of memory";
		goto out;
	}
	*len = fread(buf, 1, (size_t)st.st_size, f);
	buf[*len] = '\0';
out:
	fclose(f);
	return buf;
}

/* Load path as a text chunk (never bytecode) and hash it into the bundle digest.
 * Pushes the function, or an error message and returns non-zero. */
static int load_text_file(lua_State *L, struct load_ctx *lc, const char *path)
{
	const char *why = NULL;
	size_t len = 0;
	char *buf = read_file(path, &len, &why);
	if (!buf) {
		lua_pushfstring(L, "%s:0: cannot read: %s", path, why);
		return LUA_ERRFILE;
	}
	eg_sha256_update(lc->sha, path, strlen(path) + 1);
	eg_sha256_update(lc->sha, buf, len);
	char chunk[520];
	snprintf(chunk, sizeof(chunk), "@%s", path);
	snprintf(lc->last_file, sizeof(lc->last_file), "%s", path);
	int rc = luaL_loadbufferx(L, buf, len, chunk, "t");
	free(buf);
	return rc;
}

static struct load_ctx *get_load_ctx(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &EG_POL_LOAD_CTX_KEY);
	struct load_ctx *lc = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return lc;
}

/* require(name): only modules of the bundle (configuration directory first, then the Lua
 * directory), only at load time, only as text. Results are cached like package.loaded. */
static int sandbox_require(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	struct load_ctx *lc = get_load_ctx(L);
	char rel[256], path[1024];
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof(rel))
		return luaL_error(L, "require: bad module name");
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '_' || c == '.') ||
		    (c == '.' && (i == 0 || name[i - 1] == '.' || i == n - 1)))
			return luaL_error(L, "require: bad module name '%s'", name);
		rel[i] = c == '.' ? '/' : c;
	}
	rel[n] = '\0';
	lua_getfield(L, LUA_REGISTRYINDEX, "eg.loaded");
	lua_getfield(L, -1, name);
	if (!lua_isnil(L, -1))
		return 1;
	lua_pop(L, 1);
	if (!lc)
		return luaL_error(L, "require '%s': modules can only be loaded when the policy loads", name);
	struct eg_policy *p = lc->p;
	const char *dirs[2] = { p->conf_dir, p->lua_dir };
	for (int d = 0; d < 2; d++) {
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s.lua", dirs[d], rel);
		if (stat(path, &st) == 0)
			goto found;
	}
	return luaL_error(L, "module '%s' not found in %s or %s", name, p->conf_dir, p->lua_dir);
found:
	if (load_text_file(L, lc, path) != LUA_OK)
		return lua_error(L);
	lua_pushstring(L, name);
	lua_call(L, 1, 1);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, name);
	return 1;
}

/* Verdict constructors given to policies: allow(), deny(status, reason). */
static int l_allow(lua_State *L)
{
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "allow");
	lua_setfield(L, -2, "verdict");
	return 1;
}

/* route(host, port): allow, but connect to host:port instead of the requested destination
 * (a mirror, an internal relay). The route target must pass the allowlist itself. */
static int l_route(lua_State *L)
{
	luaL_checkstring(L, 1);
	lua_Integer port = luaL_checkinteger(L, 2);
	if (port < 1 || port > 65535)
		return luaL_error(L, "route: port must be 1-65535");
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "route");
	lua_setfield(L, -2, "verdict");
	lua_pushvalue(L, 1);
	lua_setfield(L, -2, "host");
	lua_pushinteger(L, port);
	lua_setfield(L, -2, "port");
	return 1;
}

static int l_deny(lua_State *L)
{
	lua_Integer status = luaL_optinteger(L, 1, 403);
	const char *reason = luaL_optstring(L, 2, "denied by policy");
	if (status < 400 || status > 599)
		return luaL_error(L, "deny: status must be 400-599");
	lua_createtable(L, 0, 3);
	lua_pushliteral(L, "deny");
	lua_setfield(L, -2, "verdict");
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	lua_pushstring(L, reason);
	lua_setfield(L, -2, "reason");
	return 1;
}

static int l_rawset_guard(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_pushglobaltable(L);
	if (lua_rawequal(L, 1, -1))
		return luaL_error(L, "globals are locked");
	lua_pop(L, 1);
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return 1;
}

/* setmetatable without finalizers: a __gc would run outside any hook budget. */
static int l_setmetatable_guard(lua_State *L)
{
	if (lua_istable(L, 2)) {
		lua_pushliteral(L, "__gc");
		lua_rawget(L, 2);
		if (!lua_isnil(L, -1))
			return luaL_error(L, "__gc metamethods are not allowed in policies");
		lua_pop(L, 1);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

static int l_locked_newindex(lua_State *L)
{
	return luaL_error(L, "assignment to global '%s': globals are locked after load", luaL_tolstring(L, 2, NULL));
}

static int l_locked_index(lua_State *L)
{
	return luaL_error(L, "undefined global '%s'", luaL_tolstring(L, 2, NULL));
}

/* Worst-case number of matcher steps for pattern pat on a subject of n bytes. Lua's matcher
 * backtracks: each repetition (*, +, -) of a single-character class can retry every position
 * of the rest of the subject, so the cost is bounded by (n+1)^(repetitions+1) (+1 for the
 * start positions of an unanchored search), and each optional item (?) doubles it. Escapes
 * (%x, %bxy, %f[set]) and the contents of sets are skipped, as the matcher reads them. */
static double pattern_steps(const char *pat, size_t pl, size_t n)
{
	double steps = pl && pat[0] == '^' ? 1 : (double)n + 1;
	for (size_t i = pl && pat[0] == '^' ? 1 : 0; i < pl && steps <= EG_PATTERN_MAX_STEPS;) {
		/* one single-character class (or a %b / %f item, which takes no repetition) */
		if (pat[i] == '%' && i + 1 < pl && pat[i + 1] == 'b') {
			i += 4;
			continue;
		}
		if (pat[i] == '%' && i + 1 < pl && pat[i + 1] == 'f') {
			i += 2; /* the set follows and is skipped as a class below */
		}
		if (pat[i] == '%') {
			i += 2;
		} else if (pat[i] == '[') {
			i++;
			if (i < pl && pat[i] == '^')
				i++;
			do { /* the first character of a set may be ']' */
				if (i < pl && pat[i] == '%')
					i++;
				i++;
			} while (i < pl && pat[i] != ']');
			i++;
		} else {
			i++;
		}
		if (i < pl && (pat[i] == '*' || pat[i] == '+' || pat[i] == '-')) {
			steps *= (double)n + 1;
			i++;
		} else if (i < pl && pat[i] == '?') {
			steps *= 2;
			i++;
		}
	}
	return steps;
}

/* Wrapper of string.find/match/gmatch/gsub (original in upvalue 1). The budget hook cannot
 * interrupt C code, so a pattern whose backtracking could run for seconds on this subject is
 * refused before the matcher starts; the subject's length is charged to the budget. */
static int pattern_guard(lua_State *L)
{
	size_t n, pl;
	luaL_checklstring(L, 1, &n);
	const char *pat = luaL_checklstring(L, 2, &pl);
	int plain = lua_toboolean(L, lua_upvalueindex(2)) && lua_toboolean(L, 4); /* string.find's plain flag */
	if (!plain) {
		if (pattern_steps(pat, pl, n) > EG_PATTERN_MAX_STEPS)
			return luaL_error(L, "pattern too complex for a %d-byte subject: its backtracking is not "
					  "bounded by the policy budget (fewer repetitions, or anchor it)", (int)n);
		lua_rawgetp(L, LUA_REGISTRYINDEX, &EG_POL_POLICY_KEY);
		struct eg_policy *p = lua_touserdata(L, -1);
		lua_pop(L, 1);
		if (p)
			p->budget_left -= (long)(n / 4);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

/* Open only what a policy needs; everything that reaches the file system, the process
 * or the VM's internals stays out. */
static void build_sandbox(lua_State *L)
{
	static const luaL_Reg libs[] = {
		{ LUA_GNAME, luaopen_base }, { LUA_TABLIBNAME, luaopen_table }, { LUA_STRLIBNAME, luaopen_string },
		{ LUA_MATHLIBNAME, luaopen_math }, { LUA_UTF8LIBNAME, luaopen_utf8 }, { LUA_COLIBNAME, luaopen_coroutine },
		{ LUA_OSLIBNAME, luaopen_os }, { NULL, NULL },
	};
	for (const luaL_Reg *l = libs; l->func; l++) {
		luaL_requiref(L, l->name, l->func, 1);
		lua_pop(L, 1);
	}
	static const char *const drop[] = { "dofile", "loadfile", "load", "collectgarbage", "print", NULL };
	for (int i = 0; drop[i]; i++) {
		lua_pushnil(L);
		lua_setglobal(L, drop[i]);
	}
	/* os: only the clock and dates */
	lua_getglobal(L, "os");
	lua_createtable(L, 0, 3);
	static const char *const os_keep[] = { "time", "clock", "date", "difftime", NULL };
	for (int i = 0; os_keep[i]; i++) {
		lua_getfield(L, -2, os_keep[i]);
		lua_setfield(L, -2, os_keep[i]);
	}
	lua_setglobal(L, "os");
	lua_pop(L, 1);
	/* string.dump would hand out bytecode; the string metatable is made read-only */
	lua_getglobal(L, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	static const char *const pattern_fns[] = { "find", "match", "gmatch", "gsub", NULL };
	for (int i = 0; pattern_fns[i]; i++) {
		lua_getfield(L, -1, pattern_fns[i]);
		lua_pushboolean(L, i == 0);
		lua_pushcclosure(L, pattern_guard, 2);
		lua_setfield(L, -2, pattern_fns[i]);
	}
	lua_pop(L, 1);
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);

	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "eg.loaded");
	lua_register(L, "require", sandbox_require);
	lua_register(L, "allow", l_allow);
	lua_register(L, "deny", l_deny);
	lua_register(L, "route", l_route);
	lua_register(L, "rawset", l_rawset_guard);
	lua_getglobal(L, "setmetatable");
	lua_pushcclosure(L, l_setmetatable_guard, 1);
	lua_setglobal(L, "setmetatable");
	lua_pushinteger(L, EG_POLICY_API_VERSION);
	lua_setglobal(L, "ENROLLGATE_API");
}

static void lock_globals(lua_State *L)
{
	lua_pushglobaltable(L);
	lua_createtable(L, 0, 3);
	lua_pushcfunction(L, l_locked_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushcfunction(L, l_locked_index);
	lua_setfield(L, -2, "__index");
	lua_pushliteral(L, "locked");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	lua_pop(L, 1);
}

/* Run a loaded chunk with a traceback-free message handler; returns 0 or sets err. */
int eg_pol_run_file(lua_State *L, struct load_ctx *lc, const char *path, const char *stage)
{
	if (load_text_file(L, lc, path) != LUA_OK) {
		eg_pol_set_err_lua(lc->err, stage, path, lua_tostring(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
		const char *m = lua_tostring(L, -1);
		eg_pol_set_err_lua(lc->err, stage, path, m ? m : "error object is not a string");
		lua_pop(L, 1);
		return -1;
	}
	if (!lua_istable(L, -1)) {
		eg_pol_set_err(lc->err, stage, path, 0, "the file must return a table");
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

/* Length of a configuration list: the raw border, so that a __len metamethod in an operator's
 * table can neither run code nor claim a size the table does not have. */
lua_Integer eg_pol_list_len(lua_State *L, int idx)
{
	size_t n = lua_rawlen(L, idx);
	return n > (size_t)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)n;
}

/* ---- policy table ---- */

/* Append each string (or number) of list t[key] through add(); errors point at the rule. */
static int add_list(lua_State *L, int rt, const char *key, int (*add)(struct eg_allowlist *, const char *, const char **),
		    struct eg_allowlist *al, const char *rule, struct load_ctx *lc, const char *file)
{
	lua_getfield(L, rt, key);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1)) {
		eg_pol_set_err(lc->err, "allowlist", file, eg_find_line(file, rule), "rule '%s': %s must be a list", rule, key);
		return -1;
	}
	lua_Integer n = eg_pol_list_len(L, -1);
	for (lua_Integer i = 1; i <= n; i++) {
		const char *why = NULL;
		lua_geti(L, -1, i);
		if (!lua_isstring(L, -1)) {
			eg_pol_set_err(lc->err, "allowlist", file, eg_find_line(file, rule), "rule '%s': %s[%lld] must be a string",
				rule, key, (long long)i);
			return -1;
		}
		const char *v = lua_tostring(L, -1);
		if (add(al, v, &why) < 0) {
			eg_pol_set_err(lc->err, "allowlist", file, eg_find_line(file, rule), "rule '%s': %s '%s': %s", rule, key, v, why);
			return -1;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

static int compile_allowlist(lua_State *L, int pt, struct load_ctx *lc, const char *file)
{
	struct eg_allowlist *al = eg_allowlist_new();
	const char *why;
	if (!al) {
		eg_pol_set_err(lc->err, "allowlist", file, 0, "out of memory");
		return -1;
	}
	lc->p->allowlist = al;
	lua_getfield(L, pt, "allowlist");
	if (!lua_istable(L, -1)) {
		eg_pol_set_err(lc->err, "allowlist", file, eg_find_line(file, "allowlist"), "allowlist: expected a list of rules");
		return -1;
	}
	int lt = lua_gettop(L);
	lua_Integer n = eg_pol_list_len(L, lt);
	for (lua_Integer i = 1; i <= n; i++) {
		char rname[128];
		lua_geti(L, lt, i);
		int rt = lua_gettop(L);
		if (!lua_istable(L, rt)) {
			eg_pol_set_err(lc->err, "allowlist", file, eg_find_line(file, "allowlist"), "allowlist[%lld]: expected a table", (long long)i);
			return -1;
		}
		static const char *const known[] = { "name", "hosts", "ports", "cidrs", NULL };
		if (eg_pol_check_keys(L, rt, known, "allowlist rule", lc, file, "allowlist") < 0)
			return -1;
		lua_getfield(L, rt, "name");
		if (lua_isstring(L, -1))
			snprintf(rname, sizeof(rname), "%s", lua_tostring(L, -1));
		else
			snprintf(rname, sizeof(rname), "rule%lld", (long long)i);
		lua_pop(L, 1);
		if (eg_allowlist_add_rule(al, rname, &why) < 0 ||
		    add_list(L, rt, "hosts", eg_allowlist_add_host, al, rname, lc, file) < 0 ||
		    add_list(L, rt, "cidrs", eg_allowlist_add_cidr, al, rname, lc, file) < 0 ||
		    add_list(L, rt, "ports", eg_allowlist_add_ports, al, rname, lc, file) < 0)
			return -1;
		if (eg_allowlist_end_rule(al, &why) < 0) {
			eg_pol_set_err(lc->err, "allowlist", file, eg_find_line(file, rname), "rule '%s': %s", rname, why);
			return -1;
		}
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return 0;
}

static int hook_ref(lua_State *L, int pt, const char *name, int *ref, struct load_ctx *lc, const char *file)
{
	lua_getfield(L, pt, name);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		*ref = LUA_NOREF;
		return 0;
	}
	if (!lua_isfunction(L, -1)) {
		eg_pol_set_err(lc->err, "api", file, eg_find_line(file, name), "%s must be a function", name);
		return -1;
	}
	*ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/* routes = { { prefix = "/.well-known/est/", protocol = "est" }, ... }: each protocol must be a
 * module of the bundle (protocols.<name>) declaring the API version it implements. */
static int load_routes(lua_State *L, int pt, struct load_ctx *lc, const char *file)
{
	lua_getfield(L, pt, "routes");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1)) {
		eg_pol_set_err(lc->err, "routes", file, eg_find_line(file, "routes"), "routes: expected a list");
		return -1;
	}
	int rt = lua_gettop(L);
	lua_Integer n = eg_pol_list_len(L, rt);
	if (n > EG_MAX_ROUTES) {
		eg_pol_set_err(lc->err, "routes", file, eg_find_line(file, "routes"), "routes: more than %d entries", EG_MAX_ROUTES);
		return -1;
	}
	lc->p->routes = calloc((size_t)n + 1, sizeof(struct eg_route));
	if (!lc->p->routes)
		return luaL_error(L, "not enough memory");
	for (lua_Integer i = 1; i <= n; i++) {
		struct eg_route *r = &lc->p->routes[lc->p->nroutes];
		lua_geti(L, rt, i);
		lua_getfield(L, -1, "prefix");
		lua_getfield(L, -2, "protocol");
		const char *prefix = lua_tostring(L, -2), *proto = lua_tostring(L, -1);
		if (!prefix || !proto || prefix[0] != '/' || strlen(prefix) >= sizeof(r->prefix) ||
		    strlen(proto) >= sizeof(r->protocol)) {
			eg_pol_set_err(lc->err, "routes", file, eg_find_line(file, "prefix"), "routes[%lld]: needs prefix \"/...\" and protocol",
				(long long)i);
			return -1;
		}
		snprintf(r->prefix, sizeof(r->prefix), "%s", prefix);
		snprintf(r->protocol, sizeof(r->protocol), "%s", proto);
		lua_pop(L, 3);
		/* the protocol module must exist and speak our API */
		lua_getglobal(L, "require");
		lua_pushfstring(L, "protocols.%s", r->protocol);
		if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
			eg_pol_set_err_lua(lc->err, "routes", file, lua_tostring(L, -1));
			return -1;
		}
		lua_getfield(L, -1, "api_version");
		if (lua_tointeger(L, -1) != EG_POLICY_API_VERSION) {
			eg_pol_set_err(lc->err, "routes", file, eg_find_line(file, r->protocol),
				"protocol '%s' does not declare api_version = %d", r->protocol, EG_POLICY_API_VERSION);
			return -1;
		}
		lua_getfield(L, -2, "served_by");
		if (lua_type(L, -1) == LUA_TSTRING)
			snprintf(r->served_by, sizeof(r->served_by), "%s", lua_tostring(L, -1));
		lua_pop(L, 3);
		lc->p->nroutes++;
	}
	lua_pop(L, 1);
	return 0;
}

const struct eg_route *eg_policy_route(const struct eg_policy *p, const char *path, size_t n)
{
	const struct eg_route *best = NULL;
	size_t bl = 0;
	for (int i = 0; i < p->nroutes; i++) {
		size_t l = strlen(p->routes[i].prefix);
		if (l <= n && l > bl && memcmp(path, p->routes[i].prefix, l) == 0) {
			best = &p->routes[i];
			bl = l;
		}
	}
	return best;
}


/* The EST/CMP module (ra.h) for a file that needs it; NULL with the load error set (fail closed:
 * a configuration with est.lua or cmp.lua does not load without it). */
static const struct eg_ra_ops *need_ra(struct load_ctx *lc, const char *file)
{
	char why[512];
	const struct eg_ra_ops *ra = eg_ra_load(why, sizeof(why));
	if (!ra)
		eg_pol_set_err(lc->err, "load", file, 0, "%s", why);
	return ra;
}

/* <conf>/est.lua, if present: the EST registration authority and its on_enroll hook. */
static int load_est(lua_State *L, struct load_ctx *lc)
{
	char file[600];
	struct stat st;
	snprintf(file, sizeof(file), "%s/est.lua", lc->p->conf_dir);
	if (stat(file, &st) != 0)
		return 0;
	if (eg_pol_run_file(L, lc, file, "est") < 0)
		return -1;
	const struct eg_ra_ops *ra = need_ra(lc, file);
	if (!ra)
		return -1;
	int t = lua_gettop(L);
	if (ra->est_conf_load(L, t, lc->p->conf_dir, file, &lc->p->est, lc->err) < 0 ||
	    hook_ref(L, t, "on_enroll", &lc->p->ref_on_enroll, lc, file) < 0)
		return -1;
	/* the wording of EST error answers: policies.errors, compiled now, never run per request */
	lua_getglobal(L, "require");
	lua_pushliteral(L, "policies.errors");
	lua_call(L, 1, 1);
	if (ra->est_conf_errors(L, -1, lc->p->est, lc->err) < 0)
		return -1;
	lua_settop(L, t - 1);
	return 0;
}

/* <conf>/cmp.lua, if present: the CMP proxy and its on_message hook. */
static int load_cmp(lua_State *L, struct load_ctx *lc)
{
	char file[600];
	struct stat st;
	snprintf(file, sizeof(file), "%s/cmp.lua", lc->p->conf_dir);
	if (stat(file, &st) != 0)
		return 0;
	if (eg_pol_run_file(L, lc, file, "cmp") < 0)
		return -1;
	const struct eg_ra_ops *ra = need_ra(lc, file);
	if (!ra)
		return -1;
	int t = lua_gettop(L);
	if (ra->cmp_conf_load(L, t, lc->p->conf_dir, file, &lc->p->cmp, lc->err) < 0 ||
	    hook_ref(L, t, "on_message", &lc->p->ref_on_message, lc, file) < 0)
		return -1;
	/* the failInfo and wording of CMP error answers: policies.errors, compiled now */
	lua_getglobal(L, "require");
	lua_pushliteral(L, "policies.errors");
	lua_call(L, 1, 1);
	if (ra->cmp_conf_errors(L, -1, lc->p->cmp, lc->err) < 0)
		return -1;
	lua_settop(L, t - 1);
	return 0;
}

static int load_policy(lua_State *L, struct load_ctx *lc)
{
	char file[600];
	snprintf(file, sizeof(file), "%s/policy.lua", lc->p->conf_dir);
	if (eg_pol_run_file(L, lc, file, "load") < 0)
		return -1;
	int pt = lua_gettop(L);
	static const char *const known[] = { "api_version", "allowlist", "tunnel", "routes", "on_request", "on_connect",
					     "on_client_hello", "selftest", NULL };
	if (eg_pol_check_keys(L, pt, known, "policy", lc, file, "api") < 0)
		return -1;
	lua_getfield(L, pt, "api_version");
	if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != EG_POLICY_API_VERSION) {
		eg_pol_set_err(lc->err, "api", file, eg_find_line(file, "api_version"), "api_version must be %d", EG_POLICY_API_VERSION);
		return -1;
	}
	lua_pop(L, 1);
	if (compile_allowlist(L, pt, lc, file) < 0)
		return -1;
	lua_getfield(L, pt, "tunnel");
	if (lua_istable(L, -1)) {
		lua_getfield(L, -1, "require_sni_match");
		lc->p->require_sni_match = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	if (hook_ref(L, pt, "on_request", &lc->p->ref_on_request, lc, file) < 0 ||
	    hook_ref(L, pt, "on_connect", &lc->p->ref_on_connect, lc, file) < 0 ||
	    hook_ref(L, pt, "on_client_hello", &lc->p->ref_on_client_hello, lc, file) < 0)
		return -1;
	if (load_routes(L, pt, lc, file) < 0)
		return -1;
	if (load_est(L, lc) < 0 || load_cmp(L, lc) < 0)
		return -1;
	eg_pol_create_ctx_mt(L);
	lock_globals(L);
	lua_pushnil(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &EG_POL_LOAD_CTX_KEY); /* require is over */
	lc->p->co = lua_newthread(L);
	lc->p->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (eg_pol_run_selftests(lc->p, L, pt, lc, file) < 0)
		return -1;
	lua_pop(L, 1);
	return 0;
}

/* Everything that touches the new state runs here, under lua_pcall: a Lua error or an
 * out-of-memory anywhere during the load becomes a load error, never a panic. */
static int load_all(lua_State *L)
{
	struct load_ctx *lc = get_load_ctx(L);
	build_sandbox(L);
	if (eg_pol_load_settings(L, lc) < 0) {
		lua_pushboolean(L, 0);
		return 1;
	}
	if (lc->p->settings.lua_memory > lc->p->mem_used)
		lc->p->mem_limit = lc->p->settings.lua_memory;
	lua_pushboolean(L, load_policy(L, lc) == 0);
	return 1;
}

struct eg_policy *eg_policy_load(const char *conf_dir, const char *lua_dir, struct eg_hook_stats *stats,
				 struct eg_load_error *err)
{
	struct eg_policy *p = calloc(1, sizeof(*p));
	struct load_ctx lc = { .p = p, .err = err };
	memset(err, 0, sizeof(*err));
	if (!p) {
		eg_pol_set_err(err, "load", "", 0, "out of memory");
		return NULL;
	}
	atomic_init(&p->refs, 1);
	p->ref_on_request = p->ref_on_connect = p->ref_on_client_hello = p->ref_on_enroll = p->ref_on_message = LUA_NOREF;
	snprintf(p->conf_dir, sizeof(p->conf_dir), "%s", conf_dir);
	snprintf(p->lua_dir, sizeof(p->lua_dir), "%s", lua_dir);
	p->mem_limit = 64u << 20; /* until the settings say otherwise */
	p->loaded_at = time(NULL);
	lc.sha = eg_sha256_new();
	if (!lc.sha) {
		eg_pol_set_err(err, "load", "", 0, "out of memory");
		goto fail;
	}
	p->L = lua_newstate(capped_alloc, p);
	if (!p->L) {
		eg_pol_set_err(err, "load", "", 0, "cannot create Lua state");
		goto fail;
	}
	lua_State *L = p->L;
	lua_pushlightuserdata(L, &lc);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &EG_POL_LOAD_CTX_KEY);
	lua_pushlightuserdata(L, p);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &EG_POL_POLICY_KEY);
	eg_pol_start_budget(p, EG_LOAD_INSTRUCTIONS, EG_LOAD_TIME_MS);
	lua_sethook(L, eg_pol_budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
	lua_pushcfunction(L, load_all);
	int rc = lua_pcall(L, 0, 1, 0);
	lua_sethook(L, NULL, 0, 0);
	if (rc != LUA_OK) {
		if (!err->message[0])
			eg_pol_set_err_lua(err, "load", lc.last_file,
				    lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error while loading");
		goto fail;
	}
	if (!lua_toboolean(L, -1))
		goto fail;
	lua_settop(L, 0);
	p->stats = stats;
	lua_gc(L, LUA_GCCOLLECT);
	eg_sha256_final(lc.sha, p->sha256);
	return p;
fail:
	if (!err->message[0])
		eg_pol_set_err(err, "load", lc.last_file, 0, "unknown error");
	eg_sha256_free(lc.sha);
	eg_policy_unref(p);
	return NULL;
}

void eg_policy_unref(struct eg_policy *p)
{
	if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	if (p->L)
		lua_close(p->L);
	eg_allowlist_free(p->allowlist);
	eg_ra_est_conf_free(p->est);
	eg_ra_cmp_conf_free(p->cmp);
	free(p->routes);
	free(p);
}
