/* policy.c: building, checking and running policy generations (see policy.h). */
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

#define EG_POLICY_API_VERSION 1
#define EG_MAX_LUA_FILE (1024 * 1024)
#define HOOK_COUNT 1000 /* instructions between budget checks */
#define EG_MAX_ROUTES 256
/* Budget for running the files at load time (top level of every file and module, self-tests
 * excepted: each of those runs under the hook budget). A load is off the hot path, but a file
 * that never finishes would block `check`, the reload builder and the drain on SIGTERM. */
#define EG_LOAD_INSTRUCTIONS 50000000L
#define EG_LOAD_TIME_MS 2000
/* Worst-case matcher steps a string.find/match/gmatch/gsub call may risk (see pattern_guard). */
#define EG_PATTERN_MAX_STEPS 1e8

/* Load-time context, reachable from the sandbox's require through the registry. */
struct load_ctx {
	struct eg_policy *p;
	struct eg_sha256 *sha;
	struct eg_load_error *err;
	char last_file[512];
};

static const char LOAD_CTX_KEY = 'L';
static const char POLICY_KEY = 'P';
static const char CTX_KEY = 'C';

static void start_budget(struct eg_policy *p, long instructions, long ms);
static void budget_hook(lua_State *L, lua_Debug *ar);

/* ---- errors ---- */

static void set_err(struct eg_load_error *e, const char *stage, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static void set_err(struct eg_load_error *e, const char *stage, const char *file, int line, const char *fmt, ...)
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
static void set_err_lua(struct eg_load_error *e, const char *stage, const char *fallback_file, const char *msg)
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
			set_err(e, stage, file, line, "%s", d + 2);
			return;
		}
	}
	set_err(e, stage, fallback_file, 0, "%s", msg);
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
	lua_rawgetp(L, LUA_REGISTRYINDEX, &LOAD_CTX_KEY);
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
		lua_rawgetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
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
static int run_file(lua_State *L, struct load_ctx *lc, const char *path, const char *stage)
{
	if (load_text_file(L, lc, path) != LUA_OK) {
		set_err_lua(lc->err, stage, path, lua_tostring(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
		const char *m = lua_tostring(L, -1);
		set_err_lua(lc->err, stage, path, m ? m : "error object is not a string");
		lua_pop(L, 1);
		return -1;
	}
	if (!lua_istable(L, -1)) {
		set_err(lc->err, stage, path, 0, "the file must return a table");
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

/* Length of a configuration list: the raw border, so that a __len metamethod in an operator's
 * table can neither run code nor claim a size the table does not have. */
static lua_Integer list_len(lua_State *L, int idx)
{
	size_t n = lua_rawlen(L, idx);
	return n > (size_t)LUA_MAXINTEGER ? LUA_MAXINTEGER : (lua_Integer)n;
}

/* ---- settings ---- */

void eg_settings_defaults(struct eg_settings *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->listen[0], sizeof(s->listen[0]), "127.0.0.1:48999");
	s->nlisten = 1;
	snprintf(s->admin, sizeof(s->admin), "127.0.0.1:48998");
	s->log_level = EG_LOG_INFO;
	s->access_log = 1;
	s->max_header_bytes = 16384;
	s->header_timeout = 10;
	s->idle_timeout = 60;
	s->tunnel_idle_timeout = 600;
	s->max_connections = 4096;
	s->dns_timeout = 5;
	s->connect_timeout = 10;
	s->response_timeout = 60;
	s->drain_timeout = 10;
	s->tunnel_splice = 1;
	snprintf(s->resolv_conf, sizeof(s->resolv_conf), "/etc/resolv.conf");
	s->hook_instructions = 1000000;
	s->hook_time_ms = 100;
	s->lua_memory = 32u << 20;
}

/* Read number t[key] into *out if present; range-checked. */
static int get_num(lua_State *L, int t, const char *section, const char *key, double lo, double hi, double *out,
		   struct load_ctx *lc, const char *file)
{
	int rc = 0;
	lua_getfield(L, t, key);
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1)) {
			set_err(lc->err, "settings", file, eg_find_line(file, key), "%s.%s: expected a number", section, key);
			rc = -1;
		} else {
			double v = lua_tonumber(L, -1);
			if (v < lo || v > hi) {
				set_err(lc->err, "settings", file, eg_find_line(file, key), "%s.%s: must be between %g and %g",
					section, key, lo, hi);
				rc = -1;
			} else {
				*out = v;
			}
		}
	}
	lua_pop(L, 1);
	return rc;
}

static int check_keys(lua_State *L, int t, const char *const *known, const char *section, struct load_ctx *lc,
		      const char *file, const char *stage)
{
	lua_pushnil(L);
	while (lua_next(L, t)) {
		int ok = 0;
		if (lua_type(L, -2) == LUA_TSTRING) {
			const char *k = lua_tostring(L, -2);
			for (int i = 0; known[i]; i++)
				if (strcmp(k, known[i]) == 0)
					ok = 1;
			if (!ok) {
				set_err(lc->err, stage, file, eg_find_line(file, k), "%s: unknown key '%s'", section, k);
				lua_pop(L, 2);
				return -1;
			}
		} else {
			set_err(lc->err, stage, file, 0, "%s: keys must be names", section);
			lua_pop(L, 2);
			return -1;
		}
		lua_pop(L, 1);
	}
	return 0;
}

static int load_settings(lua_State *L, struct load_ctx *lc)
{
	struct eg_settings *s = &lc->p->settings;
	char file[600];
	double v;
	snprintf(file, sizeof(file), "%s/enrollgate.lua", lc->p->conf_dir);
	eg_settings_defaults(s);
	if (run_file(L, lc, file, "settings") < 0)
		return -1;
	int t = lua_gettop(L);
	static const char *const top[] = { "listen", "admin", "log", "limits", "dns", "relay", "lua", NULL };
	if (check_keys(L, t, top, "settings", lc, file, "settings") < 0)
		return -1;

	lua_getfield(L, t, "listen");
	if (lua_istable(L, -1)) {
		s->nlisten = 0;
		for (lua_Integer i = 1; i <= list_len(L, -1) && s->nlisten < EG_MAX_LISTEN; i++) {
			lua_geti(L, -1, i);
			if (!lua_isstring(L, -1)) {
				set_err(lc->err, "settings", file, eg_find_line(file, "listen"), "listen: expected \"ADDR:PORT\" strings");
				return -1;
			}
			snprintf(s->listen[s->nlisten++], sizeof(s->listen[0]), "%s", lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	} else if (!lua_isnil(L, -1)) {
		set_err(lc->err, "settings", file, eg_find_line(file, "listen"), "listen: expected a list");
		return -1;
	}
	lua_pop(L, 1);
	lua_getfield(L, t, "admin");
	if (lua_isstring(L, -1))
		snprintf(s->admin, sizeof(s->admin), "%s", lua_tostring(L, -1));
	lua_pop(L, 1);

	lua_getfield(L, t, "log");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		lua_getfield(L, lt, "level");
		if (lua_isstring(L, -1) && eg_log_level_parse(lua_tostring(L, -1), &s->log_level) < 0) {
			set_err(lc->err, "settings", file, eg_find_line(file, "level"), "log.level: expected debug, info, warn or error");
			return -1;
		}
		lua_pop(L, 1);
		lua_getfield(L, lt, "access");
		if (!lua_isnil(L, -1))
			s->access_log = lua_toboolean(L, -1);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "limits");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		static const char *const known[] = { "max_header_bytes", "header_timeout", "idle_timeout",
			"tunnel_idle_timeout", "max_connections", "dns_timeout", "connect_timeout", "response_timeout",
			"drain_timeout", NULL };
		if (check_keys(L, lt, known, "limits", lc, file, "settings") < 0)
			return -1;
		v = (double)s->max_header_bytes;
		if (get_num(L, lt, "limits", "max_header_bytes", 1024, 1 << 20, &v, lc, file) < 0) return -1;
		s->max_header_bytes = (size_t)v;
		if (get_num(L, lt, "limits", "header_timeout", 0.1, 3600, &s->header_timeout, lc, file) < 0) return -1;
		if (get_num(L, lt, "limits", "idle_timeout", 0.1, 86400, &s->idle_timeout, lc, file) < 0) return -1;
		if (get_num(L, lt, "limits", "tunnel_idle_timeout", 0.1, 86400 * 7, &s->tunnel_idle_timeout, lc, file) < 0) return -1;
		v = s->max_connections;
		if (get_num(L, lt, "limits", "max_connections", 1, 1000000, &v, lc, file) < 0) return -1;
		s->max_connections = (int)v;
		if (get_num(L, lt, "limits", "dns_timeout", 0.1, 300, &s->dns_timeout, lc, file) < 0) return -1;
		if (get_num(L, lt, "limits", "connect_timeout", 0.1, 300, &s->connect_timeout, lc, file) < 0) return -1;
		if (get_num(L, lt, "limits", "response_timeout", 0.1, 3600, &s->response_timeout, lc, file) < 0) return -1;
		if (get_num(L, lt, "limits", "drain_timeout", 0, 3600, &s->drain_timeout, lc, file) < 0) return -1;
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "dns");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		static const char *const known[] = { "resolv_conf", NULL };
		if (check_keys(L, lt, known, "dns", lc, file, "settings") < 0)
			return -1;
		lua_getfield(L, lt, "resolv_conf");
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *path = lua_tostring(L, -1);
			if (path[0] != '/' || strlen(path) >= sizeof(s->resolv_conf)) {
				set_err(lc->err, "settings", file, eg_find_line(file, "resolv_conf"),
					"dns.resolv_conf: expected an absolute path");
				return -1;
			}
			snprintf(s->resolv_conf, sizeof(s->resolv_conf), "%s", path);
		} else if (!lua_isnil(L, -1)) {
			set_err(lc->err, "settings", file, eg_find_line(file, "resolv_conf"), "dns.resolv_conf: expected a path");
			return -1;
		}
		lua_pop(L, 1);
	} else if (!lua_isnil(L, -1)) {
		set_err(lc->err, "settings", file, eg_find_line(file, "dns"), "dns: expected a table");
		return -1;
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "relay");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		static const char *const known[] = { "splice", NULL };
		if (check_keys(L, lt, known, "relay", lc, file, "settings") < 0)
			return -1;
		lua_getfield(L, lt, "splice");
		if (lua_isboolean(L, -1)) {
			s->tunnel_splice = lua_toboolean(L, -1);
		} else if (!lua_isnil(L, -1)) {
			set_err(lc->err, "settings", file, eg_find_line(file, "splice"), "relay.splice: expected true or false");
			return -1;
		}
		lua_pop(L, 1);
	} else if (!lua_isnil(L, -1)) {
		set_err(lc->err, "settings", file, eg_find_line(file, "relay"), "relay: expected a table");
		return -1;
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "lua");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		static const char *const known[] = { "hook_instructions", "hook_time_ms", "memory_mb", NULL };
		if (check_keys(L, lt, known, "lua", lc, file, "settings") < 0)
			return -1;
		v = (double)s->hook_instructions;
		if (get_num(L, lt, "lua", "hook_instructions", 1000, 1e9, &v, lc, file) < 0) return -1;
		s->hook_instructions = (long)v;
		v = (double)s->hook_time_ms;
		if (get_num(L, lt, "lua", "hook_time_ms", 1, 10000, &v, lc, file) < 0) return -1;
		s->hook_time_ms = (long)v;
		v = (double)(s->lua_memory >> 20);
		if (get_num(L, lt, "lua", "memory_mb", 1, 4096, &v, lc, file) < 0) return -1;
		s->lua_memory = (size_t)v << 20;
	}
	lua_pop(L, 2); /* lua, settings table */
	return 0;
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
		set_err(lc->err, "allowlist", file, eg_find_line(file, rule), "rule '%s': %s must be a list", rule, key);
		return -1;
	}
	lua_Integer n = list_len(L, -1);
	for (lua_Integer i = 1; i <= n; i++) {
		const char *why = NULL;
		lua_geti(L, -1, i);
		if (!lua_isstring(L, -1)) {
			set_err(lc->err, "allowlist", file, eg_find_line(file, rule), "rule '%s': %s[%lld] must be a string",
				rule, key, (long long)i);
			return -1;
		}
		const char *v = lua_tostring(L, -1);
		if (add(al, v, &why) < 0) {
			set_err(lc->err, "allowlist", file, eg_find_line(file, rule), "rule '%s': %s '%s': %s", rule, key, v, why);
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
		set_err(lc->err, "allowlist", file, 0, "out of memory");
		return -1;
	}
	lc->p->allowlist = al;
	lua_getfield(L, pt, "allowlist");
	if (!lua_istable(L, -1)) {
		set_err(lc->err, "allowlist", file, eg_find_line(file, "allowlist"), "allowlist: expected a list of rules");
		return -1;
	}
	int lt = lua_gettop(L);
	lua_Integer n = list_len(L, lt);
	for (lua_Integer i = 1; i <= n; i++) {
		char rname[128];
		lua_geti(L, lt, i);
		int rt = lua_gettop(L);
		if (!lua_istable(L, rt)) {
			set_err(lc->err, "allowlist", file, eg_find_line(file, "allowlist"), "allowlist[%lld]: expected a table", (long long)i);
			return -1;
		}
		static const char *const known[] = { "name", "hosts", "ports", "cidrs", NULL };
		if (check_keys(L, rt, known, "allowlist rule", lc, file, "allowlist") < 0)
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
			set_err(lc->err, "allowlist", file, eg_find_line(file, rname), "rule '%s': %s", rname, why);
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
		set_err(lc->err, "api", file, eg_find_line(file, name), "%s must be a function", name);
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
		set_err(lc->err, "routes", file, eg_find_line(file, "routes"), "routes: expected a list");
		return -1;
	}
	int rt = lua_gettop(L);
	lua_Integer n = list_len(L, rt);
	if (n > EG_MAX_ROUTES) {
		set_err(lc->err, "routes", file, eg_find_line(file, "routes"), "routes: more than %d entries", EG_MAX_ROUTES);
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
			set_err(lc->err, "routes", file, eg_find_line(file, "prefix"), "routes[%lld]: needs prefix \"/...\" and protocol",
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
			set_err_lua(lc->err, "routes", file, lua_tostring(L, -1));
			return -1;
		}
		lua_getfield(L, -1, "api_version");
		if (lua_tointeger(L, -1) != EG_POLICY_API_VERSION) {
			set_err(lc->err, "routes", file, eg_find_line(file, r->protocol),
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

static int run_selftests(struct eg_policy *p, lua_State *L, int pt, struct load_ctx *lc, const char *file);
static void create_ctx_mt(lua_State *L);

/* <conf>/est.lua, if present: the EST registration authority and its on_enroll hook. */
static int load_est(lua_State *L, struct load_ctx *lc)
{
	char file[600];
	struct stat st;
	snprintf(file, sizeof(file), "%s/est.lua", lc->p->conf_dir);
	if (stat(file, &st) != 0)
		return 0;
	if (run_file(L, lc, file, "est") < 0)
		return -1;
	int t = lua_gettop(L);
	if (eg_est_conf_load(L, t, lc->p->conf_dir, file, &lc->p->est, lc->err) < 0 ||
	    hook_ref(L, t, "on_enroll", &lc->p->ref_on_enroll, lc, file) < 0)
		return -1;
	/* the wording of EST error answers: policies.errors, compiled now, never run per request */
	lua_getglobal(L, "require");
	lua_pushliteral(L, "policies.errors");
	lua_call(L, 1, 1);
	if (eg_est_conf_errors(L, -1, lc->p->est, lc->err) < 0)
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
	if (run_file(L, lc, file, "cmp") < 0)
		return -1;
	int t = lua_gettop(L);
	if (eg_cmp_conf_load(L, t, lc->p->conf_dir, file, &lc->p->cmp, lc->err) < 0 ||
	    hook_ref(L, t, "on_message", &lc->p->ref_on_message, lc, file) < 0)
		return -1;
	/* the failInfo and wording of CMP error answers: policies.errors, compiled now */
	lua_getglobal(L, "require");
	lua_pushliteral(L, "policies.errors");
	lua_call(L, 1, 1);
	if (eg_cmp_conf_errors(L, -1, lc->p->cmp, lc->err) < 0)
		return -1;
	lua_settop(L, t - 1);
	return 0;
}

static int load_policy(lua_State *L, struct load_ctx *lc)
{
	char file[600];
	snprintf(file, sizeof(file), "%s/policy.lua", lc->p->conf_dir);
	if (run_file(L, lc, file, "load") < 0)
		return -1;
	int pt = lua_gettop(L);
	static const char *const known[] = { "api_version", "allowlist", "tunnel", "routes", "on_request", "on_connect",
					     "on_client_hello", "selftest", NULL };
	if (check_keys(L, pt, known, "policy", lc, file, "api") < 0)
		return -1;
	lua_getfield(L, pt, "api_version");
	if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) != EG_POLICY_API_VERSION) {
		set_err(lc->err, "api", file, eg_find_line(file, "api_version"), "api_version must be %d", EG_POLICY_API_VERSION);
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
	create_ctx_mt(L);
	lock_globals(L);
	lua_pushnil(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &LOAD_CTX_KEY); /* require is over */
	lc->p->co = lua_newthread(L);
	lc->p->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	if (run_selftests(lc->p, L, pt, lc, file) < 0)
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
	if (load_settings(L, lc) < 0) {
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
		set_err(err, "load", "", 0, "out of memory");
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
		set_err(err, "load", "", 0, "out of memory");
		goto fail;
	}
	p->L = lua_newstate(capped_alloc, p);
	if (!p->L) {
		set_err(err, "load", "", 0, "cannot create Lua state");
		goto fail;
	}
	lua_State *L = p->L;
	lua_pushlightuserdata(L, &lc);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &LOAD_CTX_KEY);
	lua_pushlightuserdata(L, p);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
	start_budget(p, EG_LOAD_INSTRUCTIONS, EG_LOAD_TIME_MS);
	lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
	lua_pushcfunction(L, load_all);
	int rc = lua_pcall(L, 0, 1, 0);
	lua_sethook(L, NULL, 0, 0);
	if (rc != LUA_OK) {
		if (!err->message[0])
			set_err_lua(err, "load", lc.last_file,
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
		set_err(err, "load", lc.last_file, 0, "unknown error");
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
	eg_est_conf_free(p->est);
	eg_cmp_conf_free(p->cmp);
	free(p->routes);
	free(p);
}

/* ---- hooks ---- */

struct ctx_ud {
	const struct eg_request_info *ri;
	const struct eg_verdict *v;
};

/* One hook call: inputs, and the answer copied out while still in protected mode. */
struct hook_call {
	int ref;
	const struct eg_request_info *ri;
	const struct eg_verdict *v;
	struct ctx_ud *ud;
	int kind; /* 0 no opinion, 1 allow, 2 deny, 3 malformed answer, 4 route */
	int status;
	char reason[184];
	char route_host[256];
	uint16_t route_port;
	int route_is_ip;
};

static const struct eg_request_info *ctx_check(lua_State *L, struct ctx_ud **udp)
{
	struct ctx_ud *ud = luaL_checkudata(L, 1, "eg.ctx");
	if (!ud->ri)
		luaL_error(L, "ctx used after its hook returned");
	if (udp)
		*udp = ud;
	return ud->ri;
}

/* ctx:header(name): first value of a request header, or nil. */
static int ctx_header(lua_State *L)
{
	const struct eg_request_info *ri = ctx_check(L, NULL);
	size_t n;
	const char *name = luaL_checklstring(L, 2, &n);
	for (int i = 0; ri->head && i < ri->head->nheaders; i++) {
		const struct eg_header *h = &ri->head->headers[i];
		if (h->name.n == n && strncasecmp(h->name.p, name, n) == 0) {
			lua_pushlstring(L, h->value.p, h->value.n);
			return 1;
		}
	}
	lua_pushnil(L);
	return 1;
}

/* Pushes a list of the items whose type is t (NULL: all, as { type =, value = } tables). */
static void push_items(lua_State *L, const struct eg_csr_item *it, int n, const char *t)
{
	lua_newtable(L);
	lua_Integer k = 1;
	for (int i = 0; i < n; i++) {
		if (t && strcmp(it[i].type, t) != 0)
			continue;
		if (t) {
			lua_pushstring(L, it[i].value);
		} else {
			lua_createtable(L, 0, 2);
			lua_pushstring(L, it[i].type);
			lua_setfield(L, -2, "type");
			lua_pushstring(L, it[i].value);
			lua_setfield(L, -2, "value");
		}
		lua_rawseti(L, -2, k++);
	}
}

/* ctx.csr (with_request: key, extensions, challenge_password) or ctx.device.cert: a fresh
 * table describing c (see policies/est.lua). serial may be NULL. */
static void push_names(lua_State *L, const struct eg_csr *c, int with_request, const char *serial)
{
	lua_createtable(L, 0, 10);
	lua_createtable(L, 0, 3);
	lua_pushstring(L, c->key_type);
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, c->key_bits);
	lua_setfield(L, -2, "bits");
	lua_pushstring(L, c->curve);
	lua_setfield(L, -2, "curve");
	lua_setfield(L, -2, "key");
	push_items(L, c->subject, c->nsubject, NULL);
	lua_setfield(L, -2, "subject");
	lua_pushstring(L, c->subject_text);
	lua_setfield(L, -2, "subject_text");
	for (int i = c->nsubject - 1; i >= 0; i--) {
		if (strcmp(c->subject[i].type, "CN") == 0) { /* the most specific CN */
			lua_pushstring(L, c->subject[i].value);
			lua_setfield(L, -2, "cn");
			break;
		}
	}
	lua_createtable(L, 0, 5);
	static const char *const kinds[] = { "dns", "ip", "email", "uri", "other", NULL };
	for (int k = 0; kinds[k]; k++) {
		push_items(L, c->san, c->nsan, kinds[k]);
		lua_setfield(L, -2, kinds[k]);
	}
	lua_setfield(L, -2, "san");
	if (with_request) {
		lua_createtable(L, c->nextensions, 0);
		for (int i = 0; i < c->nextensions; i++) {
			lua_pushstring(L, c->extensions[i]);
			lua_rawseti(L, -2, i + 1);
		}
		lua_setfield(L, -2, "extensions");
		lua_pushboolean(L, c->has_challenge_password);
		lua_setfield(L, -2, "challenge_password");
		lua_pushboolean(L, c->requests_ca);
		lua_setfield(L, -2, "requests_ca");
		lua_pushstring(L, c->signature_alg);
		lua_setfield(L, -2, "signature_algorithm");
	}
	if (serial) {
		lua_pushstring(L, serial);
		lua_setfield(L, -2, "serial");
	}
}

/* ctx.device = { user = "...", cert = {...} }: who authenticated (either may be nil). */
static void push_device(lua_State *L, const struct eg_enroll_info *e)
{
	lua_createtable(L, 0, 2);
	if (e->user) {
		lua_pushstring(L, e->user);
		lua_setfield(L, -2, "user");
	}
	if (e->cert) {
		push_names(L, e->cert, 0, e->cert_serial);
		lua_setfield(L, -2, "cert");
	}
}

/* ctx.cmp = { sender =, recipient =, key_id =, transaction_id =, protection =, pvno =,
 * requests = { csr-like tables } } (see policies/cmp.lua). */
static void push_cmp(lua_State *L, const struct eg_enroll_info *e)
{
	const struct eg_cmp_msg *m = e->cmp;
	lua_createtable(L, 0, 8);
	lua_pushstring(L, m->sender);
	lua_setfield(L, -2, "sender");
	lua_pushstring(L, m->recipient);
	lua_setfield(L, -2, "recipient");
	lua_pushstring(L, m->sender_kid);
	lua_setfield(L, -2, "key_id");
	lua_pushstring(L, m->transaction_id);
	lua_setfield(L, -2, "transaction_id");
	lua_pushstring(L, e->protection ? e->protection : "none");
	lua_setfield(L, -2, "protection");
	lua_pushinteger(L, m->pvno);
	lua_setfield(L, -2, "pvno");
	lua_createtable(L, m->nrequests, 0);
	for (int i = 0; i < m->nrequests; i++) {
		push_names(L, m->requests[i], 1, NULL);
		lua_rawseti(L, -2, i + 1);
	}
	lua_setfield(L, -2, "requests");
}

static int ctx_index(lua_State *L)
{
	struct ctx_ud *ud;
	const struct eg_request_info *ri = ctx_check(L, &ud);
	const char *k = luaL_checkstring(L, 2);
	if (strcmp(k, "host") == 0) lua_pushstring(L, ri->host);
	else if (strcmp(k, "port") == 0) lua_pushinteger(L, ri->port);
	else if (strcmp(k, "method") == 0) lua_pushstring(L, ri->method);
	else if (strcmp(k, "path") == 0) lua_pushstring(L, ri->path ? ri->path : "");
	else if (strcmp(k, "client") == 0) lua_pushstring(L, ri->client ? ri->client : "");
	else if (strcmp(k, "sni") == 0) { if (ri->sni) lua_pushstring(L, ri->sni); else lua_pushnil(L); }
	else if (strcmp(k, "is_ip") == 0) lua_pushboolean(L, ri->host_is_ip != 0);
	else if (strcmp(k, "rule") == 0) { if (ud->v && ud->v->rule) lua_pushstring(L, ud->v->rule->name); else lua_pushnil(L); }
	else if (strcmp(k, "header") == 0) lua_pushcfunction(L, ctx_header);
	else if (ri->enroll && strcmp(k, "protocol") == 0) lua_pushstring(L, ri->enroll->protocol);
	else if (ri->enroll && strcmp(k, "label") == 0) lua_pushstring(L, ri->enroll->label);
	else if (ri->enroll && strcmp(k, "op") == 0) lua_pushstring(L, ri->enroll->op);
	else if (ri->enroll && strcmp(k, "csr") == 0) { if (ri->enroll->csr) push_names(L, ri->enroll->csr, 1, NULL); else lua_pushnil(L); }
	else if (ri->enroll && ri->enroll->cmp && strcmp(k, "cmp") == 0) push_cmp(L, ri->enroll);
	else if (ri->enroll && strcmp(k, "device") == 0) push_device(L, ri->enroll);
	else return luaL_error(L, "ctx has no field '%s'", k);
	return 1;
}

static int ctx_newindex(lua_State *L)
{
	return luaL_error(L, "ctx is read-only");
}

static void create_ctx_mt(lua_State *L)
{
	luaL_newmetatable(L, "eg.ctx");
	lua_pushcfunction(L, ctx_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, ctx_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushliteral(L, "ctx");
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

/* Arm the budget for one hook call or one load: instructions and a monotonic deadline. */
static void start_budget(struct eg_policy *p, long instructions, long ms)
{
	p->budget_failed = 0;
	p->budget_left = instructions;
	clock_gettime(CLOCK_MONOTONIC, &p->deadline);
	p->deadline.tv_sec += ms / 1000;
	p->deadline.tv_nsec += (ms % 1000) * 1000000L;
	if (p->deadline.tv_nsec >= 1000000000L) {
		p->deadline.tv_sec++;
		p->deadline.tv_nsec -= 1000000000L;
	}
}

static int timespec_past(const struct timespec *d)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* Count hook, on every thread of the state (threads inherit it from the one that creates
 * them: the main thread while the files load, the hook coroutine while a hook runs). It
 * charges the budget of whatever is running, a hook or the load. Once the budget is spent the
 * hook coroutine is yielded away (a pcall in the policy cannot catch a yield); any other thread
 * gets an error, and the hook fires on every instruction so that code running where a yield
 * is impossible (inside a C function, a nested coroutine) is stopped as soon as it runs again. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &POLICY_KEY);
	struct eg_policy *p = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (!p->budget_failed) {
		int charged = lua_gethookcount(L);
		if (charged != HOOK_COUNT) /* left at 1 by an earlier failure of this thread */
			lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
		p->budget_left -= charged;
		if (p->budget_left > 0 && !timespec_past(&p->deadline))
			return;
		p->budget_failed = 1;
	}
	lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
	if (L == p->co && lua_isyieldable(L))
		lua_yield(L, 0);
	/* where: the running function (luaL_where's level 1 would be its caller) */
	if (!lua_getinfo(L, "Sl", ar) || ar->currentline <= 0)
		lua_pushliteral(L, "");
	else
		lua_pushfstring(L, "%s:%d: ", ar->short_src, ar->currentline);
	if (p->in_hook)
		lua_pushliteral(L, "policy budget exhausted");
	else
		lua_pushfstring(L, "loading exceeded its budget (%d million instructions or %d ms)",
				(int)(EG_LOAD_INSTRUCTIONS / 1000000), EG_LOAD_TIME_MS);
	lua_concat(L, 2);
	lua_error(L);
}

/* Continuation of hook_trampoline: copy the hook's answer out with raw accesses. */
static int hook_finish(lua_State *co, int status, lua_KContext k)
{
	struct hook_call *hc = (struct hook_call *)k;
	int t = lua_gettop(co);
	(void)status;
	if (lua_isnil(co, t)) {
		hc->kind = 0;
		return 0;
	}
	hc->kind = 3;
	if (!lua_istable(co, t))
		return 0;
	lua_pushliteral(co, "verdict");
	lua_rawget(co, t);
	const char *verdict = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : NULL;
	if (verdict && strcmp(verdict, "allow") == 0) {
		hc->kind = 1;
	} else if (verdict && strcmp(verdict, "deny") == 0) {
		hc->kind = 2;
		lua_pushliteral(co, "status");
		lua_rawget(co, t);
		lua_Integer st = lua_isinteger(co, -1) ? lua_tointeger(co, -1) : 403;
		hc->status = st >= 400 && st <= 599 ? (int)st : 403;
		lua_pushliteral(co, "reason");
		lua_rawget(co, t);
		snprintf(hc->reason, sizeof(hc->reason), "%s",
			 lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : "denied by policy");
	} else if (verdict && strcmp(verdict, "route") == 0) {
		lua_pushliteral(co, "host");
		lua_rawget(co, t);
		lua_pushliteral(co, "port");
		lua_rawget(co, t);
		size_t n = 0;
		const char *host = lua_type(co, -2) == LUA_TSTRING ? lua_tolstring(co, -2, &n) : NULL;
		lua_Integer port = lua_isinteger(co, -1) ? lua_tointeger(co, -1) : 0;
		int fam = host ? eg_http_normalize_host(host, n, hc->route_host, sizeof(hc->route_host)) : -1;
		if (fam >= 0 && port >= 1 && port <= 65535) {
			hc->kind = 4;
			hc->route_port = (uint16_t)port;
			hc->route_is_ip = fam;
		}
	}
	return 0;
}

/* Coroutine body: build ctx and call the hook, all in protected mode. */
static int hook_trampoline(lua_State *co)
{
	struct hook_call *hc = lua_touserdata(co, 1);
	lua_settop(co, 0);
	lua_rawgeti(co, LUA_REGISTRYINDEX, hc->ref);
	struct ctx_ud *ud = lua_newuserdatauv(co, sizeof(struct ctx_ud), 0);
	ud->ri = hc->ri;
	ud->v = hc->v;
	luaL_setmetatable(co, "eg.ctx");
	/* The registry keeps this ctx alive until the next hook call replaces it, so that run_hook
	 * can still mark it dead after the hook's frames (and any reference in them) are gone. */
	lua_pushvalue(co, -1);
	lua_rawsetp(co, LUA_REGISTRYINDEX, &CTX_KEY);
	hc->ud = ud;
	lua_callk(co, 1, 1, (lua_KContext)hc, hook_finish);
	return hook_finish(co, LUA_OK, (lua_KContext)hc);
}

static void deny(struct eg_verdict *v, int status, const char *stage, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void deny(struct eg_verdict *v, int status, const char *stage, const char *fmt, ...)
{
	va_list ap;
	v->allow = 0;
	v->status = status;
	v->stage = stage;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

static void count(struct eg_policy *p, atomic_ullong *c)
{
	if (p->stats)
		atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static int new_coroutine(lua_State *L)
{
	struct eg_policy *p = lua_touserdata(L, 1);
	lua_State *co = lua_newthread(L);
	lua_rawseti(L, LUA_REGISTRYINDEX, p->co_ref);
	p->co = co;
	return 0;
}

/* Swap in a new coroutine for hooks; on failure (out of memory) hooks deny until it works. */
static void replace_coroutine(struct eg_policy *p)
{
	lua_State *L = p->L;
	lua_pushcfunction(L, new_coroutine);
	lua_pushlightuserdata(L, p);
	if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
		lua_pop(L, 1);
		p->co = NULL;
	}
}

/* Run one hook in the state's coroutine under the instruction, time and memory budgets and
 * apply its answer to v. Errors of any kind deny (fail closed). */
static void run_hook(struct eg_policy *p, int ref, const struct eg_request_info *ri, struct eg_verdict *v)
{
	struct hook_call hc = { .ref = ref, .ri = ri, .v = v };
	int nres = 0, rc;
	if (!p->co)
		replace_coroutine(p);
	lua_State *co = p->co;
	if (!co) {
		if (p->stats)
			count(p, &p->stats->oom);
		deny(v, 403, "hook-error", "policy state out of memory");
		return;
	}
	if (p->stats)
		count(p, &p->stats->calls);
	start_budget(p, p->settings.hook_instructions, p->settings.hook_time_ms);
	p->in_hook = 1;
	lua_sethook(co, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
	lua_pushcfunction(co, hook_trampoline);
	lua_pushlightuserdata(co, &hc);
	rc = lua_resume(co, p->L, 1, &nres);
	if (hc.ud)
		hc.ud->ri = NULL; /* ctx is dead from here on, wherever the policy kept it */
	if (rc == LUA_OK && !p->budget_failed) {
		p->in_hook = 0;
		lua_sethook(co, NULL, 0, 0);
		lua_settop(co, 0);
		if (hc.kind == 4) {
			snprintf(v->route_host, sizeof(v->route_host), "%s", hc.route_host);
			v->route_port = hc.route_port;
			v->route_is_ip = hc.route_is_ip;
			v->stage = "hook";
		} else if (hc.kind == 2) {
			deny(v, hc.status, "hook", "%s", hc.reason);
		} else if (hc.kind == 3) {
			if (p->stats)
				count(p, &p->stats->errors);
			deny(v, 403, "hook-error", "policy hook returned something other than allow(), deny() or nil");
		}
		return;
	}
	if (rc == LUA_YIELD || p->budget_failed) {
		int oom = p->budget_failed == 2 || rc == LUA_ERRMEM;
		if (p->stats)
			count(p, oom ? &p->stats->oom : &p->stats->timeouts);
		deny(v, 403, "hook-error", oom ? "policy hook exceeded its memory limit" : "policy hook exceeded its time budget");
	} else {
		if (p->stats)
			count(p, rc == LUA_ERRMEM ? &p->stats->oom : &p->stats->errors);
		const char *m = lua_type(co, -1) == LUA_TSTRING ? lua_tostring(co, -1) : "non-string error";
		deny(v, 403, "hook-error", "policy hook failed: %.150s", m);
	}
	/* An errored or abandoned coroutine is never reused: Lua leaves it with hooks disabled
	 * (and possibly suspended inside the policy), so a fresh one takes its place. The old one
	 * is garbage; its pending __close handlers never run, so nothing runs unbudgeted. */
	lua_sethook(co, NULL, 0, 0);
	replace_coroutine(p);
	p->in_hook = 0;
}

void eg_policy_decide(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v)
{
	const struct eg_rule *rule = NULL;
	int is_connect = strcmp(ri->method, "CONNECT") == 0;
	memset(v, 0, sizeof(*v));
	enum eg_allow_result r = eg_allowlist_match_name(p->allowlist, ri->host, ri->host_is_ip, ri->port, &rule);
	switch (r) {
	case EG_DENY_HOST:
		deny(v, 403, "allowlist", "destination %.100s is not in the allowlist", ri->host);
		return;
	case EG_DENY_PORT:
		v->rule = rule; /* the rule that names the host, for the log */
		deny(v, 403, "allowlist", "port %u is not allowed for %.100s", ri->port, ri->host);
		return;
	case EG_ALLOW_DEFER:
		v->deferred = 1;
		break;
	case EG_ALLOW_MATCH:
		v->rule = rule;
		break;
	}
	v->allow = 1;
	v->stage = "allowlist";
	int ref = is_connect ? p->ref_on_connect : p->ref_on_request;
	if (ref != LUA_NOREF)
		run_hook(p, ref, ri, v);
	if (v->allow && v->route_host[0]) {
		/* a route may narrow or redirect, never widen: its target must be allowed itself */
		rule = NULL;
		r = eg_allowlist_match_name(p->allowlist, v->route_host, v->route_is_ip, v->route_port, &rule);
		if (r == EG_DENY_HOST || r == EG_DENY_PORT) {
			deny(v, 403, "hook", "route target %.100s:%u is not in the allowlist", v->route_host, v->route_port);
			return;
		}
		v->rule = r == EG_ALLOW_MATCH ? rule : NULL;
		v->deferred = r == EG_ALLOW_DEFER;
	}
}

void eg_policy_check_addr(struct eg_policy *p, const struct sockaddr *sa, uint16_t port, struct eg_verdict *v)
{
	const struct eg_rule *out = NULL;
	const char *why = NULL;
	char addr[INET6_ADDRSTRLEN] = "?";
	if (!v->allow)
		return;
	if (eg_allowlist_check_addr(p->allowlist, v->deferred ? NULL : v->rule, sa, port, &out, &why) == 0) {
		v->rule = out;
		v->deferred = 0;
		return;
	}
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
	if (v->deferred)
		deny(v, 403, "address", "resolved address %s is %s", addr, why);
	else
		deny(v, 403, "address", "resolved address %s is %s and rule '%.60s' does not name it", addr, why,
		     v->rule ? v->rule->name : "?");
}

void eg_policy_client_hello(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v)
{
	if (p->require_sni_match && ri->sni && strcasecmp(ri->sni, ri->host) != 0) {
		deny(v, 403, "sni", "TLS SNI %.80s does not match CONNECT host %.80s", ri->sni, ri->host);
		return;
	}
	if (p->ref_on_client_hello == LUA_NOREF)
		return;
	/* the route on_connect chose stays (for the log); the hook itself may not route */
	char route[sizeof(v->route_host)];
	memcpy(route, v->route_host, sizeof(route));
	v->route_host[0] = '\0';
	run_hook(p, p->ref_on_client_hello, ri, v);
	if (v->allow && v->route_host[0]) {
		deny(v, 403, "hook-error", "on_client_hello cannot route: the tunnel is already connected");
		return;
	}
	memcpy(v->route_host, route, sizeof(route));
}

/* ---- self-test vectors ---- */

void eg_policy_enroll(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (p->ref_on_enroll == LUA_NOREF || !ri->enroll) {
		deny(v, 403, "hook-error", "no on_enroll policy");
		return;
	}
	v->allow = 1;
	v->stage = "hook";
	run_hook(p, p->ref_on_enroll, ri, v);
	if (v->allow && v->route_host[0])
		deny(v, 403, "hook-error", "on_enroll cannot route: upstreams come from est.lua");
}

void eg_policy_cmp(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (p->ref_on_message == LUA_NOREF || !ri->enroll) {
		deny(v, 403, "hook-error", "no on_message policy");
		return;
	}
	v->allow = 1;
	v->stage = "hook";
	run_hook(p, p->ref_on_message, ri, v);
	if (v->allow && v->route_host[0])
		deny(v, 403, "hook-error", "on_message cannot route: upstreams come from cmp.lua");
}

static int run_selftests(struct eg_policy *p, lua_State *L, int pt, struct load_ctx *lc, const char *file)
{
	lua_getfield(L, pt, "selftest");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1)) {
		set_err(lc->err, "selftest", file, eg_find_line(file, "selftest"), "selftest: expected a list");
		return -1;
	}
	int st = lua_gettop(L);
	lua_Integer n = list_len(L, st);
	for (lua_Integer i = 1; i <= n; i++) {
		struct eg_request_info ri = { 0 };
		struct eg_verdict v;
		char host[256];
		lua_geti(L, st, i);
		int t = lua_gettop(L);
		lua_getfield(L, t, "method");
		lua_getfield(L, t, "host");
		lua_getfield(L, t, "port");
		lua_getfield(L, t, "path");
		lua_getfield(L, t, "expect");
		lua_getfield(L, t, "address");
		const char *method = luaL_optstring(L, t + 1, "GET");
		const char *h = lua_tostring(L, t + 2);
		const char *expect = lua_tostring(L, t + 5);
		const char *address = lua_tostring(L, t + 6);
		int kind = h ? eg_http_normalize_host(h, strlen(h), host, sizeof(host)) : -1;
		if (kind < 0 || !lua_isinteger(L, t + 3) || lua_tointeger(L, t + 3) < 1 || lua_tointeger(L, t + 3) > 65535 ||
		    !expect ||
		    (strcmp(expect, "allow") != 0 && strcmp(expect, "deny") != 0)) {
			set_err(lc->err, "selftest", file, eg_find_line(file, "selftest"),
				"selftest[%lld]: needs host, port and expect = \"allow\" or \"deny\"", (long long)i);
			return -1;
		}
		int is_connect = strcmp(method, "CONNECT") == 0;
		ri.method = method;
		ri.host = host;
		ri.host_is_ip = kind;
		ri.port = (uint16_t)lua_tointeger(L, t + 3);
		ri.path = is_connect ? NULL : luaL_optstring(L, t + 4, "/");
		ri.client = "selftest";
		eg_policy_decide(p, &ri, &v);
		if (v.allow && address) {
			struct eg_cidr c;
			struct sockaddr_storage ss = { 0 };
			if (eg_cidr_parse(address, &c) < 0) {
				set_err(lc->err, "selftest", file, eg_find_line(file, address), "selftest[%lld]: bad address", (long long)i);
				return -1;
			}
			ss.ss_family = (sa_family_t)c.family;
			if (c.family == AF_INET)
				memcpy(&((struct sockaddr_in *)&ss)->sin_addr, c.addr, 4);
			else
				memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, c.addr, 16);
			eg_policy_check_addr(p, (struct sockaddr *)&ss, ri.port, &v);
		}
		if ((strcmp(expect, "allow") == 0) != (v.allow != 0)) {
			char needle[300];
			snprintf(needle, sizeof(needle), "\"%s\"", h);
			set_err(lc->err, "selftest", file, eg_find_line(file, needle),
				"selftest[%lld]: %s %s:%u expected %s, got %s (%s)", (long long)i, method, host, ri.port, expect,
				v.allow ? "allow" : "deny", v.allow ? (v.rule ? v.rule->name : "") : v.reason);
			return -1;
		}
		lua_settop(L, t - 1);
	}
	lua_pop(L, 1);
	return 0;
}
