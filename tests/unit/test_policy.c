/* test_policy.c: unit tests of policy generations: loading and its errors, the sandbox, the hook
 * budgets (instructions, time, memory) and the verdict pipeline. Each test writes its own
 * configuration directory (enrollgate.lua + policy.lua) under a mkdtemp directory. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "digest.h"
#include "http_parse.h"
#include "policy.h"

#ifndef EG_TEST_SOURCE_DIR
#error "EG_TEST_SOURCE_DIR must name the source tree"
#endif
#define LUA_DIR EG_TEST_SOURCE_DIR "/lua"

/* Settings most tests use: a small memory cap and the default budgets. */
static const char SETTINGS[] =
	"return {\n"
	"  log = { level = 'error', access = false },\n"
	"  lua = { hook_instructions = 1000000, hook_time_ms = 100, memory_mb = 16 },\n"
	"}\n";

/* ---- fixture: one temporary configuration directory per test ---- */

struct fx {
	char dir[128];
	struct eg_policy *p;
	struct eg_load_error err;
	struct eg_hook_stats stats;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	const char *tmp = getenv("TMPDIR");
	snprintf(f->dir, sizeof(f->dir), "%s/egpolicy.XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	if (f->p)
		eg_policy_unref(f->p);
	DIR *d = opendir(f->dir);
	if (d) {
		struct dirent *e;
		char path[512];
		while ((e = readdir(d)) != NULL) {
			if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
				continue;
			snprintf(path, sizeof(path), "%s/%s", f->dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(f->dir);
	free(f);
	return 0;
}

static void write_bytes(struct fx *f, const char *name, const char *text, size_t len)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", f->dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(text, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static void write_file(struct fx *f, const char *name, const char *text)
{
	write_bytes(f, name, text, strlen(text));
}

/* Load settings + policy; returns the generation (kept in f->p for teardown) or NULL. */
static struct eg_policy *load(struct fx *f, const char *settings, const char *policy)
{
	if (f->p) {
		eg_policy_unref(f->p);
		f->p = NULL;
	}
	write_file(f, "enrollgate.lua", settings ? settings : SETTINGS);
	write_file(f, "policy.lua", policy);
	memset(&f->stats, 0, sizeof(f->stats));
	f->p = eg_policy_load(f->dir, LUA_DIR, &f->stats, &f->err);
	return f->p;
}

static struct eg_policy *load_ok(struct fx *f, const char *settings, const char *policy)
{
	struct eg_policy *p = load(f, settings, policy);
	if (!p)
		fail_msg("load failed: [%s] %s:%d: %s", f->err.stage, f->err.file, f->err.line, f->err.message);
	return p;
}

static void expect_load_error(struct fx *f, const char *settings, const char *policy, const char *stage, int line,
			      const char *needle)
{
	if (load(f, settings, policy))
		fail_msg("policy loaded, expected a %s error", stage);
	if (strcmp(f->err.stage, stage) != 0)
		fail_msg("stage %s, expected %s (%s:%d: %s)", f->err.stage, stage, f->err.file, f->err.line, f->err.message);
	if (line >= 0 && f->err.line != line)
		fail_msg("line %d, expected %d (%s)", f->err.line, line, f->err.message);
	if (needle && !strstr(f->err.message, needle))
		fail_msg("message '%s' lacks '%s'", f->err.message, needle);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void decide_h(struct eg_policy *p, const char *method, const char *host, uint16_t port, const char *path,
		     const struct eg_http_head *head, struct eg_verdict *v)
{
	char norm[256];
	int kind = eg_http_normalize_host(host, strlen(host), norm, sizeof(norm));
	assert_true(kind >= 0);
	struct eg_request_info ri = {
		.method = method,
		.host = norm,
		.host_is_ip = kind,
		.port = port,
		.path = strcmp(method, "CONNECT") == 0 ? NULL : path,
		.client = "192.0.2.99:40000",
		.head = head,
	};
	memset(v, 0x5a, sizeof(*v));
	eg_policy_decide(p, &ri, v);
	assert_non_null(v->stage);
}

static void decide(struct eg_policy *p, const char *method, const char *host, uint16_t port, const char *path,
		   struct eg_verdict *v)
{
	decide_h(p, method, host, port, path, NULL, v);
}

/* GET http://example.com<path>: the hook must deny it with stage "hook-error". */
static void expect_hook_error(struct eg_policy *p, const char *path, const char *needle)
{
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, path, &v);
	if (v.allow || strcmp(v.stage, "hook-error") != 0)
		fail_msg("%s: allow=%d stage=%s reason=%s", path, v.allow, v.stage, v.reason);
	assert_int_equal(v.status, 403);
	if (needle && !strstr(v.reason, needle))
		fail_msg("%s: reason '%s' lacks '%s'", path, v.reason, needle);
}

static void expect_allowed(struct eg_policy *p, const char *path)
{
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, path, &v);
	if (!v.allow)
		fail_msg("%s denied: stage=%s reason=%s", path, v.stage, v.reason);
	assert_non_null(v.rule);
	assert_string_equal(v.rule->name, "ex");
}

#define ALLOWLIST                                                                                     \
	"  allowlist = {\n"                                                                           \
	"    { name = 'ex', hosts = { 'example.com', '*.example.org' }, ports = { 80, 443 } },\n" \
	"  },\n"

/* ---- loading ---- */

static const char GOOD[] =
	"local A = require 'policies.allowlist'\n"
	"return {\n"
	"  api_version = 1,\n"
	"  allowlist = A.rules{\n"
	"    { name = 'ex', hosts = { 'example.com', '*.example.org' }, ports = { 80, 443 } },\n"
	"    { name = 'lab', cidrs = { '192.0.2.0/24' }, ports = { '8000-8100' } },\n"
	"  },\n"
	"  tunnel = { require_sni_match = true },\n"
	"  on_request = function(ctx) if ctx.path == '/no' then return deny(403, 'no') end end,\n"
	"  selftest = {\n"
	"    { method = 'GET', host = 'example.com', port = 80, expect = 'allow' },\n"
	"    { method = 'GET', host = 'example.com', port = 80, path = '/no', expect = 'deny' },\n"
	"    { method = 'CONNECT', host = 'a.example.org', port = 443, expect = 'allow' },\n"
	"    { method = 'CONNECT', host = 'example.org', port = 443, expect = 'deny' },\n"
	"    { method = 'GET', host = 'example.com', port = 80, address = '127.0.0.1', expect = 'deny' },\n"
	"    { method = 'GET', host = 'lab.test', port = 8080, address = '192.0.2.5', expect = 'allow' },\n"
	"    { method = 'GET', host = 'lab.test', port = 8080, address = '198.51.100.5', expect = 'deny' },\n"
	"  },\n"
	"}\n";

static void test_good_policy_loads(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, GOOD);
	struct eg_verdict v;
	assert_int_equal(eg_allowlist_count(p->allowlist), 2);
	assert_int_equal(p->settings.hook_instructions, 1000000);
	assert_int_equal(p->settings.hook_time_ms, 100);
	assert_int_equal(p->settings.lua_memory, 16u << 20);
	assert_int_equal(p->require_sni_match, 1);
	assert_int_equal(strlen(p->sha256), 64);
	assert_true(eg_policy_lua_memory(p) > 0);
	assert_true(eg_policy_lua_memory(p) < p->settings.lua_memory);

	decide(p, "GET", "example.com", 80, "/x", &v);
	assert_int_equal(v.allow, 1);
	assert_string_equal(v.stage, "allowlist");
	assert_string_equal(v.rule->name, "ex");
	decide(p, "GET", "example.com", 80, "/no", &v);
	assert_int_equal(v.allow, 0);
	assert_int_equal(v.status, 403);
	assert_string_equal(v.stage, "hook");
	assert_string_equal(v.reason, "no");
	decide(p, "GET", "evil.example", 80, "/", &v);
	assert_int_equal(v.allow, 0);
	assert_string_equal(v.stage, "allowlist");
	decide(p, "CONNECT", "example.com", 22, NULL, &v);
	assert_int_equal(v.allow, 0);
	assert_string_equal(v.stage, "allowlist");
	assert_non_null(strstr(v.reason, "port 22"));
	decide(p, "GET", "anything.test", 8080, "/", &v);
	assert_int_equal(v.allow, 1);
	assert_int_equal(v.deferred, 1);

	/* the same bundle hashes the same; the default configuration loads too */
	char sha[65];
	memcpy(sha, p->sha256, sizeof(sha));
	p = load_ok(f, NULL, GOOD);
	assert_string_equal(p->sha256, sha);
	struct eg_load_error err;
	struct eg_policy *def = eg_policy_load(EG_TEST_SOURCE_DIR "/conf", LUA_DIR, NULL, &err);
	if (!def)
		fail_msg("conf/: %s:%d: %s", err.file, err.line, err.message);
	eg_policy_unref(def);
}

static void test_refcount(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, GOOD);
	eg_policy_ref(p);
	eg_policy_unref(p); /* back to the fixture's reference */
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, "/x", &v);
	assert_int_equal(v.allow, 1);
}

static void test_syntax_error_line(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {},\n"
		"  on_request = function(ctx) return deny( end,\n"
		"}\n";
	expect_load_error(f, NULL, pol, "load", 4, NULL);
	assert_non_null(strstr(f->err.file, "policy.lua"));
	assert_non_null(strstr(f->err.file, f->dir));

	/* a run-time error while the file runs */
	static const char rt[] =
		"local A = 1\n"
		"\n"
		"local B = A + nil\n"
		"return { api_version = 1, allowlist = {} }\n";
	expect_load_error(f, NULL, rt, "load", 3, "arithmetic");

	/* errors in the settings file are the settings stage */
	static const char bad_settings[] = "return {\n  lua = { memory_mb = 16 \n  limits = {},\n}\n";
	expect_load_error(f, bad_settings, GOOD, "settings", 3, NULL);
	assert_non_null(strstr(f->err.file, "enrollgate.lua"));
	expect_load_error(f, "return {\n  lua = { memory_mb = 0 },\n}\n", GOOD, "settings", 2, "memory_mb");
	expect_load_error(f, "return 42\n", GOOD, "settings", 0, "must return a table");
	expect_load_error(f, NULL, "return 42\n", "load", 0, "must return a table");
	expect_load_error(f, NULL, "return { api_version = 2, allowlist = {} }\n", "api", 1, "api_version");
	expect_load_error(f, NULL, "return { allowlist = {} }\n", "api", -1, "api_version");
	expect_load_error(f, NULL, "return { api_version = 1 }\n", "allowlist", -1, "allowlist");
	expect_load_error(f, NULL, "return { api_version = 1, allowlist = {}, on_request = 5 }\n", "api", 1,
			  "on_request must be a function");
}

static void test_missing_ports(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {\n"
		"    { name = 'good', hosts = { 'a.example' }, ports = { 443 } },\n"
		"    { name = 'noports', hosts = { 'b.example' } },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, pol, "allowlist", 5, "no ports");
	assert_non_null(strstr(f->err.message, "noports"));
	static const char empty[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {\n"
		"    { name = 'emptyports', hosts = { 'b.example' }, ports = {} },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, empty, "allowlist", 4, "no ports");
	static const char badport[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {\n"
		"    { name = 'badport', hosts = { 'b.example' }, ports = { 70000 } },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, badport, "allowlist", 4, "invalid port");
	static const char badhost[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {\n"
		"    { name = 'badhost', hosts = { 'exa mple.com' }, ports = { 443 } },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, badhost, "allowlist", 4, "invalid host");
}

static void test_unknown_keys(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {},\n"
		"  on_reqest = function(ctx) end,\n"
		"}\n";
	expect_load_error(f, NULL, pol, "api", 4, "on_reqest");
	static const char rule[] =
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = {\n"
		"    { name = 'r', hosts = { 'a.example' }, port = { 443 } },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, rule, "allowlist", 4, "port");
	static const char settings[] =
		"return {\n"
		"  limits = {\n"
		"    max_header_byte = 1,\n"
		"  },\n"
		"}\n";
	expect_load_error(f, settings, GOOD, "settings", 3, "max_header_byte");
	expect_load_error(f, "return { lsten = {} }\n", GOOD, "settings", 1, "lsten");
	expect_load_error(f, "return { lua = { memory = 1 } }\n", GOOD, "settings", 1, "memory");
}

static void test_failing_selftest(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return {\n"
		"  api_version = 1,\n"
		ALLOWLIST
		"  selftest = {\n"
		"    { method = 'GET', host = 'example.com', port = 80, expect = 'allow' },\n"
		"    { method = 'CONNECT', host = \"evil.example\", port = 443, expect = 'allow' },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, pol, "selftest", 8, "expected allow");
	assert_non_null(strstr(f->err.message, "evil.example"));
	static const char malformed[] =
		"return {\n"
		"  api_version = 1,\n"
		ALLOWLIST
		"  selftest = {\n"
		"    { method = 'GET', host = 'example.com', expect = 'allow' },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, malformed, "selftest", -1, "needs host, port");
	static const char badport[] =
		"return {\n"
		"  api_version = 1,\n"
		ALLOWLIST
		"  selftest = {\n"
		"    { method = 'GET', host = 'example.com', port = 65616, expect = 'deny' },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, badport, "selftest", -1, "needs host, port");
	/* a hook that fails during a self-test is a failing vector, not a crash */
	static const char hookfail[] =
		"return {\n"
		"  api_version = 1,\n"
		ALLOWLIST
		"  on_request = function(ctx) while true do end end,\n"
		"  selftest = {\n"
		"    { method = 'GET', host = 'example.com', port = 80, expect = 'allow' },\n"
		"  },\n"
		"}\n";
	expect_load_error(f, NULL, hookfail, "selftest", -1, "budget");
}

/* Lua shortens chunk names longer than 60 characters to "...tail"; errors still name the file
 * in full, so that `enrollgate check` points at the right place in a deep directory. */
static void test_long_path_error(void **state)
{
	struct fx *f = *state;
	char saved[sizeof(f->dir)], deep[sizeof(f->dir)];
	snprintf(saved, sizeof(saved), "%s", f->dir);
	int n = snprintf(deep, sizeof(deep), "%s/a-directory-name-long-enough-to-be-shortened-by-lua", saved);
	assert_true(n > 0 && (size_t)n < sizeof(deep));
	assert_int_equal(mkdir(deep, 0700), 0);
	snprintf(f->dir, sizeof(f->dir), "%s", deep);
	assert_null(load(f, NULL, "return {\n  api_version = 1,\n  x = nil + 1,\n}\n"));
	char want[256];
	snprintf(want, sizeof(want), "%s/policy.lua", deep);
	assert_string_equal(f->err.file, want);
	assert_int_equal(f->err.line, 3);
	char path[256];
	snprintf(path, sizeof(path), "%s/policy.lua", deep);
	unlink(path);
	snprintf(path, sizeof(path), "%s/enrollgate.lua", deep);
	unlink(path);
	rmdir(deep);
	snprintf(f->dir, sizeof(f->dir), "%s", saved);
}

static void test_bytecode_refused(void **state)
{
	struct fx *f = *state;
	static const char bc[] = "\x1bLuaT\x00\x19\x93\r\n\x1a\n\x04\x08\x08xV\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
	write_file(f, "enrollgate.lua", SETTINGS);
	write_bytes(f, "policy.lua", bc, sizeof(bc) - 1);
	f->p = eg_policy_load(f->dir, LUA_DIR, NULL, &f->err);
	assert_null(f->p);
	assert_string_equal(f->err.stage, "load");
	assert_non_null(strstr(f->err.message, "binary"));
	/* a bytecode module reached through require */
	write_bytes(f, "evilmod.lua", bc, sizeof(bc) - 1);
	expect_load_error(f, NULL, "local m = require 'evilmod'\nreturn { api_version = 1, allowlist = {} }\n", "load",
			  -1, "binary");
	/* and as settings */
	write_bytes(f, "enrollgate.lua", bc, sizeof(bc) - 1);
	write_file(f, "policy.lua", GOOD);
	f->p = eg_policy_load(f->dir, LUA_DIR, NULL, &f->err);
	assert_null(f->p);
	assert_string_equal(f->err.stage, "settings");
}

static void test_require(void **state)
{
	struct fx *f = *state;
	/* modules come from the configuration directory first, then the bundle */
	write_file(f, "mymod.lua", "return { port = 443 }\n");
	static const char pol[] =
		"local m = require 'mymod'\n"
		"local m2 = require 'mymod'\n"
		"assert(m == m2)\n"
		"local R = require 'protocols.registry'\n"
		"return {\n"
		"  api_version = 1,\n"
		"  allowlist = { { name = 'ex', hosts = { 'example.com' }, ports = { m.port, 80 } } },\n"
		"  routes = { { prefix = '/fwd/', protocol = 'forward' },\n"
		"             table.unpack(R.routes{ est = true, cmp = { '/ejbca/publicweb/cmp/' }, scep = true, acme = true }) },\n"
		"  on_request = function(ctx)\n"
		"    if ctx.path == '/late' then require 'mymod2' end\n"
		"    if ctx.path == '/cached' then return deny(450, tostring(require('mymod').port)) end\n"
		"  end,\n"
		"}\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	assert_non_null(eg_policy_route(p, "/fwd/x", 6));
	assert_string_equal(eg_policy_route(p, "/fwd/x", 6)->protocol, "forward");
	assert_null(eg_policy_route(p, "/fw", 3));
	/* every enrollment protocol has a module: EST and CMP name the listener that serves them */
	const struct eg_route *rt = eg_policy_route(p, "/.well-known/est/cacerts", 24);
	assert_non_null(rt);
	assert_string_equal(rt->protocol, "est");
	assert_non_null(strstr(rt->served_by, "est.lua"));
	rt = eg_policy_route(p, "/ejbca/publicweb/cmp/x", 22);
	assert_non_null(rt);
	assert_non_null(strstr(rt->served_by, "cmp.lua"));
	rt = eg_policy_route(p, "/cgi-bin/pkiclient.exe", 22);
	assert_non_null(rt);
	assert_string_equal(rt->protocol, "scep");
	assert_string_equal(rt->served_by, "");
	/* at hook time, require only gives what was loaded */
	expect_hook_error(p, "/late", "only be loaded when the policy loads");
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, "/cached", &v);
	assert_int_equal(v.status, 450);
	assert_string_equal(v.reason, "443");
	expect_load_error(f, NULL, "require 'nosuchmodule'\nreturn {}\n", "load", 1, "not found");
	expect_load_error(f, NULL, "require '../etc/passwd'\nreturn {}\n", "load", 1, "bad module name");
	expect_load_error(f, NULL, "require 'os'\nreturn {}\n", "load", 1, "not found");
}

/* ---- sandbox ---- */

static const char SANDBOX[] =
	"local probes = {\n"
	"  os_execute = function() return os.execute('true') end,\n"
	"  os_exit = function() return os.exit(3) end,\n"
	"  os_remove = function() return os.remove('/nonexistent-eg') end,\n"
	"  os_getenv = function() return os.getenv('HOME') end,\n"
	"  io = function() return io.open('/etc/passwd') end,\n"
	"  load = function() return load('return 1')() end,\n"
	"  loadfile = function() return loadfile('/etc/passwd') end,\n"
	"  dofile = function() return dofile('/etc/passwd') end,\n"
	"  dump = function() return string.dump(function() end) end,\n"
	"  dump_method = function() return ('x'):dump() end,\n"
	"  string_mt = function() getmetatable('').__index = {} end,\n"
	"  require = function() return require('io') end,\n"
	"  collectgarbage = function() return collectgarbage('count') end,\n"
	"  print = function() print('x') end,\n"
	"  debug = function() return debug.getinfo(1) end,\n"
	"  package = function() return package.loaded end,\n"
	"  gc = function() return setmetatable({}, { __gc = function() end }) end,\n"
	"  global_assign = function() counter = 1 end,\n"
	"  global_read = function() return undefined_thing end,\n"
	"  rawset_G = function() rawset(_G, 'x', 1) end,\n"
	"  env_assign = function() local e = _ENV; e.y = 1 end,\n"
	"  setmetatable_G = function() setmetatable(_G, nil) end,\n"
	"  yield = function() coroutine.yield() end,\n"
	"  ctx_write = function(ctx) ctx.host = 'evil' end,\n"
	"  ctx_unknown = function(ctx) return ctx.nope end,\n"
	"  error = function() error('boom') end,\n"
	"  error_table = function() error({}) end,\n"
	"  bad_return = function() return 'allow' end,\n"
	"  bad_deny = function() return deny(200, 'x') end,\n"
	"}\n"
	"return {\n"
	"  api_version = 1,\n"
	ALLOWLIST
	"  on_request = function(ctx)\n"
	"    local f = probes[ctx.path:sub(2)]\n"
	"    if f then return f(ctx) end\n"
	"    if ctx.path == '/harmless' then rawset({}, 'k', 1); return allow() end\n"
	"  end,\n"
	"}\n";

static void test_sandbox(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, SANDBOX);
	static const char *const probes[] = { "/os_execute", "/os_exit", "/os_remove", "/os_getenv", "/io", "/load",
					      "/loadfile", "/dofile", "/dump", "/dump_method", "/string_mt", "/require",
					      "/collectgarbage", "/print", "/debug", "/package", "/gc", "/yield",
					      "/ctx_write", "/ctx_unknown", "/error", "/error_table", "/bad_return",
					      "/bad_deny", NULL };
	for (int i = 0; probes[i]; i++) {
		expect_hook_error(p, probes[i], NULL);
		expect_allowed(p, "/harmless"); /* the next call still works */
	}
	expect_hook_error(p, "/gc", "__gc");
	expect_hook_error(p, "/ctx_write", "read-only");
	expect_hook_error(p, "/error", "boom");
	expect_hook_error(p, "/bad_deny", "400-599");
	expect_hook_error(p, "/bad_return", "other than allow");
	expect_allowed(p, "/nothing");
	assert_true(atomic_load(&f->stats.calls) > 0);
	assert_true(atomic_load(&f->stats.errors) > 0);
}

static void test_globals_locked(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, SANDBOX);
	expect_hook_error(p, "/global_assign", "globals are locked");
	expect_allowed(p, "/harmless");
	expect_hook_error(p, "/global_read", "undefined global");
	expect_hook_error(p, "/rawset_G", "globals are locked");
	expect_hook_error(p, "/env_assign", "globals are locked");
	expect_hook_error(p, "/setmetatable_G", NULL);
	expect_allowed(p, "/harmless");
	/* globals are writable while the files load */
	static const char pol[] =
		"LIMIT = 3\n"
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx) if #ctx.path > LIMIT then return deny(414, 'long') end end }\n";
	p = load_ok(f, NULL, pol);
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, "/abcd", &v);
	assert_int_equal(v.status, 414);
	expect_allowed(p, "/ab");
}

/* ---- verdicts ---- */

static void test_hook_verdicts(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx)\n"
		"    if ctx.path == '/451' then return deny(451, 'x') end\n"
		"    if ctx.path == '/default' then return deny() end\n"
		"    if ctx.path == '/allow' then return allow() end\n"
		"    if ctx.path == '/forged' then return { verdict = 'deny', status = 200, reason = 7 } end\n"
		"    if ctx.path == '/table' then return {} end\n"
		"  end }\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, "/451", &v);
	assert_int_equal(v.allow, 0);
	assert_int_equal(v.status, 451);
	assert_string_equal(v.reason, "x");
	assert_string_equal(v.stage, "hook");
	decide(p, "GET", "example.com", 80, "/default", &v);
	assert_int_equal(v.allow, 0);
	assert_int_equal(v.status, 403);
	assert_string_equal(v.reason, "denied by policy");
	decide(p, "GET", "example.com", 80, "/allow", &v);
	assert_int_equal(v.allow, 1);
	assert_string_equal(v.stage, "allowlist");
	decide(p, "GET", "example.com", 80, "/nil", &v);
	assert_int_equal(v.allow, 1);
	/* a hand-made deny table cannot pick a non-error status */
	decide(p, "GET", "example.com", 80, "/forged", &v);
	assert_int_equal(v.allow, 0);
	assert_int_equal(v.status, 403);
	assert_string_equal(v.reason, "denied by policy");
	expect_hook_error(p, "/table", "other than allow");
	/* a hook cannot widen the allowlist: it does not even run for a denied destination */
	decide(p, "GET", "evil.example", 80, "/allow", &v);
	assert_int_equal(v.allow, 0);
	assert_string_equal(v.stage, "allowlist");
}

static void test_connect_vs_request(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx)\n"
		"    return deny(453, table.concat({ 'req', ctx.method, ctx.host, ctx.port, ctx.path, tostring(ctx.rule),\n"
		"      tostring(ctx.is_ip), ctx.client, tostring((ctx:header('x-test'))), tostring((ctx:header('nope'))) }, ' '))\n"
		"  end,\n"
		"  on_connect = function(ctx)\n"
		"    return deny(452, table.concat({ 'conn', ctx.method, ctx.host, ctx.port, '[' .. ctx.path .. ']',\n"
		"      tostring(ctx.sni), tostring((ctx:header('x-test'))) }, ' '))\n"
		"  end,\n"
		"}\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	struct eg_verdict v;
	static struct eg_http_head head;
	const char *raw = "GET http://www.example.org/q?x=1 HTTP/1.1\r\nHost: www.example.org\r\nX-Test: hello\r\n\r\n";
	assert_int_equal(eg_http_parse_request(raw, strlen(raw), &head), EG_HTTP_OK);
	decide_h(p, "GET", "WWW.example.org", 443, "/q?x=1", &head, &v);
	if (v.status != 453)
		fail_msg("status %d: %s", v.status, v.reason);
	assert_string_equal(v.reason, "req GET www.example.org 443 /q?x=1 ex false 192.0.2.99:40000 hello nil");
	decide(p, "CONNECT", "example.com", 443, NULL, &v);
	assert_int_equal(v.status, 452);
	assert_string_equal(v.reason, "conn CONNECT example.com 443 [] nil nil");
	decide(p, "POST", "example.com", 80, "/", &v);
	if (v.status != 453)
		fail_msg("status %d: %s", v.status, v.reason);

	/* without on_connect, CONNECT is decided by the allowlist alone */
	static const char only_req[] =
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx) return deny(453, 'req') end }\n";
	p = load_ok(f, NULL, only_req);
	decide(p, "CONNECT", "example.com", 443, NULL, &v);
	assert_int_equal(v.allow, 1);
	decide(p, "GET", "example.com", 443, "/", &v);
	assert_int_equal(v.status, 453);
}

static void test_check_addr_and_client_hello(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return { api_version = 1,\n" ALLOWLIST
		"  tunnel = { require_sni_match = true },\n"
		"  on_client_hello = function(ctx) if ctx.sni == nil then return deny(403, 'no sni') end end,\n"
		"}\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	struct eg_verdict v;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	decide(p, "CONNECT", "example.com", 443, NULL, &v);
	assert_int_equal(v.allow, 1);
	inet_pton(AF_INET, "127.0.0.1", &sin.sin_addr);
	eg_policy_check_addr(p, (struct sockaddr *)&sin, 443, &v);
	assert_int_equal(v.allow, 0);
	assert_string_equal(v.stage, "address");
	assert_non_null(strstr(v.reason, "loopback"));
	decide(p, "CONNECT", "example.com", 443, NULL, &v);
	inet_pton(AF_INET, "93.184.216.34", &sin.sin_addr);
	eg_policy_check_addr(p, (struct sockaddr *)&sin, 443, &v);
	assert_int_equal(v.allow, 1);

	struct eg_request_info ri = { .method = "CONNECT", .host = "example.com", .port = 443, .client = "c", .sni = "example.com" };
	decide(p, "CONNECT", "example.com", 443, NULL, &v);
	eg_policy_client_hello(p, &ri, &v);
	assert_int_equal(v.allow, 1);
	ri.sni = "other.example";
	eg_policy_client_hello(p, &ri, &v);
	assert_int_equal(v.allow, 0);
	assert_string_equal(v.stage, "sni");
	ri.sni = NULL;
	decide(p, "CONNECT", "example.com", 443, NULL, &v);
	eg_policy_client_hello(p, &ri, &v);
	assert_int_equal(v.allow, 0);
	assert_string_equal(v.reason, "no sni");
}

/* ---- budgets ---- */

static const char RUNAWAY[] =
	"local saved\n"
	"return { api_version = 1,\n" ALLOWLIST
	"  on_request = function(ctx)\n"
	"    local p = ctx.path\n"
	"    if p == '/loop' then while true do end end\n"
	"    if p == '/pcall' then while true do pcall(function() while true do end end) end end\n"
	"    if p == '/xpcall' then while true do xpcall(function() while true do end end, function() while true do end end) end end\n"
	"    if p == '/wrap' then local co = coroutine.wrap(function() while true do end end) while true do co() end end\n"
	"    if p == '/sort' then while true do pcall(table.sort, {3,2,1,5,4}, function(a, b) while true do end end) end end\n"
	"    if p == '/gsub' then while true do pcall(string.gsub, 'aaaa', 'a', function() while true do end end) end end\n"
	"    if p == '/close' then\n"
	"      while true do pcall(function()\n"
	"        local x <close> = setmetatable({}, { __close = function() while true do end end })\n"
	"        error('x')\n"
	"      end) end\n"
	"    end\n"
	"    if p == '/recurse' then local function r() return 1 + r() end local x = r() return x end\n"
	"    if p == '/alloc' then local t = {} while true do t[#t + 1] = string.rep('x', 1e5) end end\n"
	"    if p == '/alloc_pcall' then\n"
	"      local t = {}\n"
	"      while true do pcall(function() t[#t + 1] = string.rep('x', 1e5) end) end\n"
	"    end\n"
	"    if p == '/bigrep' then return deny(403, #string.rep('x', 1e9)) end\n"
	"    if p == '/concat' then local s = 'x' while true do s = s .. s end end\n"
	"    if p == '/stash' then saved = ctx return nil end\n"
	"    if p == '/use' then return deny(451, saved.host) end\n"
	"    if p == '/use_header' then return deny(451, tostring(saved:header('host'))) end\n"
	"    if p == '/work' then local s = 0 for i = 1, 10000 do s = s + i end if s ~= 50005000 then return deny() end end\n"
	"  end,\n"
	"}\n";

static void run_timed(struct eg_policy *p, const char *path, const char *needle, double max_s)
{
	double t0 = now_s();
	expect_hook_error(p, path, needle);
	double dt = now_s() - t0;
	if (dt > max_s)
		fail_msg("%s: denied after %.3f s", path, dt);
	expect_allowed(p, "/work"); /* the coroutine was reset */
	expect_allowed(p, "/work");
}

static void test_infinite_loop(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, RUNAWAY);
	run_timed(p, "/loop", "budget", 1.0);
	assert_true(atomic_load(&f->stats.timeouts) >= 1);
}

static void test_pcall_cannot_catch_budget(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, RUNAWAY);
	run_timed(p, "/pcall", "budget", 1.0);
	run_timed(p, "/xpcall", NULL, 1.0);
	run_timed(p, "/wrap", "budget", 1.0);
	run_timed(p, "/sort", "budget", 1.0);
	run_timed(p, "/gsub", "budget", 1.0);
	run_timed(p, "/close", NULL, 1.0);
	run_timed(p, "/recurse", NULL, 1.0);
}

static void test_time_budget(void **state)
{
	struct fx *f = *state;
	static const char settings[] = "return { lua = { hook_instructions = 1e9, hook_time_ms = 50, memory_mb = 16 } }\n";
	struct eg_policy *p = load_ok(f, settings, RUNAWAY);
	double t0 = now_s();
	expect_hook_error(p, "/loop", "time budget");
	double dt = now_s() - t0;
	assert_true(dt >= 0.045);
	assert_true(dt < 1.0);
	expect_allowed(p, "/work");
}

static void test_memory_budget(void **state)
{
	struct fx *f = *state;
	/* a generous time budget, so that memory runs out first even in a sanitizer build */
	static const char settings[] = "return { lua = { hook_instructions = 1e8, hook_time_ms = 3000, memory_mb = 16 } }\n";
	struct eg_policy *p = load_ok(f, settings, RUNAWAY);
	size_t base = eg_policy_lua_memory(p);
	run_timed(p, "/alloc", "memory", 4.0);
	assert_true(atomic_load(&f->stats.oom) >= 1);
	assert_true(eg_policy_lua_memory(p) <= p->settings.lua_memory);
	run_timed(p, "/alloc_pcall", NULL, 4.0);
	run_timed(p, "/bigrep", NULL, 4.0);
	run_timed(p, "/concat", NULL, 4.0);
	/* repeated failures do not leave the state starved */
	for (int i = 0; i < 5; i++)
		run_timed(p, "/alloc", "memory", 4.0);
	for (int i = 0; i < 50; i++)
		expect_allowed(p, "/work");
	(void)base;
}

static void test_ctx_dies_with_its_hook(void **state)
{
	struct fx *f = *state;
	struct eg_policy *p = load_ok(f, NULL, RUNAWAY);
	expect_allowed(p, "/stash");
	expect_hook_error(p, "/use", "ctx used after its hook returned");
	expect_hook_error(p, "/use_header", "ctx used after its hook returned");
	expect_allowed(p, "/work");
}

/* ---- budgets and lifetimes at the edges (findings of the first review, fixed) ---- */

/* In a forked child: default signal dispositions, so that a crash kills the child instead of
 * being caught by cmocka's handlers (which would go on running the other tests there). */
static void child_defaults(unsigned seconds)
{
	signal(SIGSEGV, SIG_DFL);
	signal(SIGBUS, SIG_DFL);
	signal(SIGILL, SIG_DFL);
	signal(SIGFPE, SIG_DFL);
	signal(SIGABRT, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	alarm(seconds);
}

/* Run fn(f) in a forked child with an alarm, so that a hang or a crash fails the test instead
 * of blocking or killing the suite; the child must exit 0. */
static void in_child(struct fx *f, unsigned seconds, int (*fn)(struct fx *))
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_defaults(seconds);
		_exit(fn(f));
	}
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (WIFSIGNALED(st))
		fail_msg("child %s (signal %d)", WTERMSIG(st) == SIGALRM ? "still running after the alarm" : "crashed",
			 WTERMSIG(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* The hook of f->p must deny GET http://example.com/ with stage "hook-error". */
static int child_expect_hook_error(struct fx *f)
{
	struct eg_verdict v;
	decide(f->p, "GET", "example.com", 80, "/", &v);
	return v.allow == 0 && strcmp(v.stage, "hook-error") == 0 ? 0 : 1;
}

/* The count hook cannot stop work inside one C function: a backtracking Lua pattern would run
 * for (practically) ever in the matcher without executing a VM instruction. The sandbox's
 * pattern functions refuse such a pattern before matching; the hook fails closed. */
static void test_budget_covers_pattern_matching(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx)\n"
		"    return deny(403, tostring(string.find(string.rep('a', 40), string.rep('a*', 40) .. 'b')))\n"
		"  end }\n";
	load_ok(f, NULL, pol);
	in_child(f, 5, child_expect_hook_error);
}

/* The pattern guard refuses only what could explode: ordinary patterns on a long host still
 * match (with their captures), plain find skips the check, and a refusal is a catchable error. */
static void test_pattern_guard_ordinary_patterns(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"local long = string.rep('a', 60) .. '.' .. string.rep('b', 60) .. '.' .. string.rep('c', 60)\n"
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx)\n"
		"    local a, b, c = long:match('^(%w+)%.(%w+)%.(%w+)$')\n"
		"    local n = select(2, long:gsub('[%.]', '-'))\n"
		"    local plain = string.find(string.rep('a*', 40), 'a*a*a*a*a*a*b', 1, true)\n"
		"    local ok, err = pcall(string.find, string.rep('a', 40), string.rep('a*', 40) .. 'b')\n"
		"    return deny(451, #a .. ' ' .. #b .. ' ' .. #c .. ' ' .. n .. ' ' .. tostring(plain) .. ' ' ..\n"
		"      tostring(ok) .. ' ' .. tostring(err:find('too complex', 1, true) ~= nil))\n"
		"  end }\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, "/", &v);
	assert_int_equal(v.status, 451);
	assert_string_equal(v.reason, "60 60 60 2 nil false true");
}

/* Coroutines created while the files load inherit the load's count hook (threads copy the
 * hook of their creator), so a hook that resumes one is still bounded by its own budget. */
static void test_budget_covers_load_time_coroutines(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"local spin = coroutine.wrap(function() while true do end end)\n"
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx) spin() end }\n";
	load_ok(f, NULL, pol);
	in_child(f, 5, child_expect_hook_error);
}

/* Code that runs while the files load (top level of policy.lua, enrollgate.lua and required
 * modules) has a budget too: otherwise `enrollgate check` would never return, and the reload
 * builder thread would never finish. */
static int child_load_spin(struct fx *f)
{
	return load(f, NULL, "while true do end\nreturn {}\n") == NULL ? 0 : 1;
}

static void test_budget_covers_loading(void **state)
{
	struct fx *f = *state;
	in_child(f, 5, child_load_spin);
}

/* luaL_len would honour __len, and load_routes() sizes its calloc by the length: lists are
 * measured raw, so the metamethod neither runs nor claims entries that are not there. */
static int child_load_routes_len(struct fx *f)
{
	static const char pol[] =
		"return { api_version = 1, allowlist = {},\n"
		"  routes = setmetatable({ { prefix = '/x/', protocol = 'forward' } }, { __len = function() return math.maxinteger end }),\n"
		"}\n";
	struct eg_policy *p = load(f, NULL, pol);
	return p && p->nroutes == 1 ? 0 : 1;
}

static void test_routes_len_metamethod(void **state)
{
	struct fx *f = *state;
	in_child(f, 10, child_load_routes_len);
}

/* run_hook() marks the ctx userdata dead after lua_resume() returns; the userdata must still
 * be alive then, even when the hook's frames no longer hold it (a tail call) and a GC cycle
 * ran. Without the registry anchor this is a use after free that a sanitizer build
 * (-DEG_SANITIZE=ON) reports. */
static void test_ctx_survives_gc_during_hook(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"local function churn() local t for i = 1, 100000 do t = { i } end return nil end\n"
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx) if ctx.path == '/tail' then return churn() end end }\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	for (int i = 0; i < 3; i++)
		expect_allowed(p, "/tail");
}

/* ctx:header(name) returns exactly one value, nil for a missing header (the policy API says
 * "or nil"), so select("#", ...) and tostring() see it. */
static void test_ctx_header_returns_nil(void **state)
{
	struct fx *f = *state;
	static const char pol[] =
		"return { api_version = 1,\n" ALLOWLIST
		"  on_request = function(ctx) return deny(450, tostring(select('#', ctx:header('nope')))) end }\n";
	struct eg_policy *p = load_ok(f, NULL, pol);
	struct eg_verdict v;
	decide(p, "GET", "example.com", 80, "/", &v);
	assert_int_equal(v.status, 450);
	assert_string_equal(v.reason, "1");
}

/* EVP's SHA-256 of buf[0..n) as hex. */
static void evp_sha256_hex(const unsigned char *buf, size_t n, char want[65])
{
	unsigned char md[32];
	unsigned int len = 0;
	assert_int_equal(EVP_Digest(buf, n, md, &len, EVP_sha256(), NULL), 1);
	for (int i = 0; i < 32; i++)
		snprintf(want + 2 * i, 3, "%02x", md[i]);
}

/* The bundle digest (our SHA-256, digest.c) agrees with the FIPS 180 vectors and with OpenSSL's
 * for every length from 0 to 300 bytes (each padding case: 55, 56, 63, 64, 119, 120 ...) and for
 * 5000 bytes fed in uneven pieces. */
static void test_bundle_digest(void **state)
{
	(void)state;
	char hex[65], want[65];
	struct eg_sha256 *d = eg_sha256_new();
	assert_non_null(d);
	eg_sha256_update(d, "abc", 3);
	eg_sha256_final(d, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	static const char two_blocks[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	d = eg_sha256_new();
	eg_sha256_update(d, two_blocks, strlen(two_blocks));
	eg_sha256_final(d, hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	d = eg_sha256_new();
	eg_sha256_final(d, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	static unsigned char buf[5000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	for (size_t n = 0; n <= 300; n++) {
		evp_sha256_hex(buf, n, want);
		d = eg_sha256_new();
		eg_sha256_update(d, buf, n);
		eg_sha256_final(d, hex);
		assert_string_equal(hex, want);
	}
	evp_sha256_hex(buf, sizeof(buf), want);
	d = eg_sha256_new();
	for (size_t off = 0, step = 1; off < sizeof(buf); off += step, step = step * 3 + 1)
		eg_sha256_update(d, buf + off, off + step <= sizeof(buf) ? step : sizeof(buf) - off);
	eg_sha256_final(d, hex);
	assert_string_equal(hex, want);
	eg_sha256_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bundle_digest),
		cmocka_unit_test_setup_teardown(test_good_policy_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refcount, setup, teardown),
		cmocka_unit_test_setup_teardown(test_syntax_error_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_ports, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failing_selftest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bytecode_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_long_path_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_require, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sandbox, setup, teardown),
		cmocka_unit_test_setup_teardown(test_globals_locked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hook_verdicts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_vs_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_addr_and_client_hello, setup, teardown),
		cmocka_unit_test_setup_teardown(test_infinite_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pcall_cannot_catch_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_time_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_memory_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctx_dies_with_its_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_covers_pattern_matching, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pattern_guard_ordinary_patterns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_routes_len_metamethod, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_covers_load_time_coroutines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_budget_covers_loading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctx_header_returns_nil, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctx_survives_gc_during_hook, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
