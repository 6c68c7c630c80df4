/* policy_hooks.c: running a generation's Lua hooks (on_request, on_connect, on_client_hello,
 * on_enroll, on_message) in its reusable coroutine under an instruction, time and memory budget,
 * with a read-only ctx; a hook that fails, overruns or runs out of memory denies (fail closed).
 * Also the self-test vectors a policy file carries, run at load. Part of the policy runtime
 * (policy_int.h). */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <time.h>

#include "cmp_conf.h"
#include "cmp_msg.h"
#include "csr.h"
#include "est_conf.h"
#include "policy_int.h"

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

void eg_pol_create_ctx_mt(lua_State *L)
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
void eg_pol_start_budget(struct eg_policy *p, long instructions, long ms)
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
void eg_pol_budget_hook(lua_State *L, lua_Debug *ar)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &EG_POL_POLICY_KEY);
	struct eg_policy *p = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (!p->budget_failed) {
		int charged = lua_gethookcount(L);
		if (charged != HOOK_COUNT) /* left at 1 by an earlier failure of this thread */
			lua_sethook(L, eg_pol_budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
		p->budget_left -= charged;
		if (p->budget_left > 0 && !timespec_past(&p->deadline))
			return;
		p->budget_failed = 1;
	}
	lua_sethook(L, eg_pol_budget_hook, LUA_MASKCOUNT, 1);
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
	lua_rawsetp(co, LUA_REGISTRYINDEX, &EG_POL_CTX_KEY);
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
	eg_pol_start_budget(p, p->settings.hook_instructions, p->settings.hook_time_ms);
	p->in_hook = 1;
	lua_sethook(co, eg_pol_budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
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

/* ---- enrollment hooks (est.lua's on_enroll, cmp.lua's on_message) ---- */

/* Run the enrollment hook ref (named name, from conf): it may allow or deny, never route. */
static void run_enrollment_hook(struct eg_policy *p, int ref, const char *name, const char *conf,
				const struct eg_request_info *ri, struct eg_verdict *v)
{
	memset(v, 0, sizeof(*v));
	if (ref == LUA_NOREF || !ri->enroll) {
		deny(v, 403, "hook-error", "no %s policy", name);
		return;
	}
	v->allow = 1;
	v->stage = "hook";
	run_hook(p, ref, ri, v);
	if (v->allow && v->route_host[0])
		deny(v, 403, "hook-error", "%s cannot route: upstreams come from %s", name, conf);
}

void eg_policy_enroll(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v)
{
	run_enrollment_hook(p, p->ref_on_enroll, "on_enroll", "est.lua", ri, v);
}

void eg_policy_cmp(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v)
{
	run_enrollment_hook(p, p->ref_on_message, "on_message", "cmp.lua", ri, v);
}

/* ---- self-test vectors ---- */

int eg_pol_run_selftests(struct eg_policy *p, lua_State *L, int pt, struct load_ctx *lc, const char *file)
{
	lua_getfield(L, pt, "selftest");
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1)) {
		eg_pol_set_err(lc->err, "selftest", file, eg_find_line(file, "selftest"), "selftest: expected a list");
		return -1;
	}
	int st = lua_gettop(L);
	lua_Integer n = eg_pol_list_len(L, st);
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
			eg_pol_set_err(lc->err, "selftest", file, eg_find_line(file, "selftest"),
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
				eg_pol_set_err(lc->err, "selftest", file, eg_find_line(file, address), "selftest[%lld]: bad address", (long long)i);
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
			eg_pol_set_err(lc->err, "selftest", file, eg_find_line(file, needle),
				"selftest[%lld]: %s %s:%u expected %s, got %s (%s)", (long long)i, method, host, ri.port, expect,
				v.allow ? "allow" : "deny", v.allow ? (v.rule ? v.rule->name : "") : v.reason);
			return -1;
		}
		lua_settop(L, t - 1);
	}
	lua_pop(L, 1);
	return 0;
}
