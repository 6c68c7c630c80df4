/* policy.h: policy generations — the Lua runtime, its sandbox and the verdict pipeline.
 *
 * A generation owns one sandboxed Lua state, the compiled allowlist and the settings that
 * were loaded with it. It is built completely (files loaded as text, API checked, allowlist
 * compiled, self-test vectors run) before anyone sees it, then published by the server. Every
 * request takes a reference for its lifetime, so a reload never changes the policy under a
 * request that already started; the last reference frees the generation. */
#ifndef EG_POLICY_H
#define EG_POLICY_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "allowlist.h"
#include "http_parse.h"
#include "settings.h"

struct lua_State;
struct eg_est_conf;
struct eg_cmp_conf;
struct eg_cmp_msg;
struct eg_csr;

/* Why a load failed: what `enrollgate check` prints as file:line: message. */
struct eg_load_error {
	char stage[24];   /* "settings", "load", "api", "allowlist", "routes", "selftest" */
	char file[256];
	int line;
	char message[512];
};

struct eg_route {
	char prefix[128];
	char protocol[32];
	char served_by[96];  /* the module's served_by: the listener that serves it; "" = no handler */
};

/* Counters a hook run feeds; the server folds them into metrics. */
struct eg_hook_stats {
	atomic_ullong calls, errors, timeouts, oom;
};

struct eg_policy {
	atomic_int refs;
	uint64_t generation;      /* set by the server when published */
	time_t loaded_at;
	char sha256[65];          /* over every file loaded, in load order */
	char conf_dir[512];
	char lua_dir[512];
	struct eg_settings settings;
	struct eg_allowlist *allowlist;
	int require_sni_match;
	struct eg_route *routes;
	int nroutes;

	struct lua_State *L;
	struct lua_State *co;     /* reusable coroutine the hooks run in */
	int co_ref;
	int ref_on_request, ref_on_connect, ref_on_client_hello;
	struct eg_est_conf *est;  /* <conf>/est.lua compiled, or NULL when there is none */
	struct eg_cmp_conf *cmp;  /* <conf>/cmp.lua compiled, or NULL when there is none */
	int ref_on_message;       /* cmp.lua's on_message */
	int ref_on_enroll;

	/* memory accounting and the budget of the hook being run */
	size_t mem_used, mem_limit;
	long budget_left;
	struct timespec deadline;
	int budget_failed;        /* 1 instruction/time budget, 2 out of memory */
	int in_hook;
	struct eg_hook_stats *stats;
};

/* An enrollment request, as on_enroll (EST) or on_message (CMP) sees it (ctx.protocol,
 * ctx.label, ctx.op, ctx.csr, ctx.device, and for CMP ctx.cmp). */
struct eg_enroll_info {
	const char *protocol;          /* "est", "cmp" */
	const char *label;             /* EST label ("" for the unlabelled path), CMP alias */
	const char *op;                /* "simpleenroll", ...; CMP: the message type ("ir", ...) */
	const struct eg_csr *csr;      /* parsed and signature-checked request; NULL if none */
	const struct eg_cmp_msg *cmp;  /* CMP: the parsed message (ctx.cmp); NULL for EST */
	const char *protection;        /* CMP: "mac", "signature", "none" (verified) */
	const char *user;              /* HTTP Basic user who authenticated, or NULL */
	const struct eg_csr *cert;     /* names of the verified TLS client certificate, or NULL */
	const char *cert_serial;       /* its serial number (hex), or NULL */
};

/* What the pipeline is asked about. */
struct eg_request_info {
	const char *method;
	const char *host;
	int host_is_ip;
	uint16_t port;
	const char *path;        /* NULL for CONNECT */
	const char *client;      /* "ip:port" of the client */
	const char *sni;         /* on_client_hello only */
	const struct eg_http_head *head; /* headers for ctx:header(); may be NULL */
	const struct eg_enroll_info *enroll; /* on_enroll only */
};

struct eg_verdict {
	int allow;
	int status;               /* for deny */
	char reason[200];
	const struct eg_rule *rule;  /* allowlist rule that matched (allow) or NULL */
	int deferred;             /* allowed pending a CIDR-only rule on the resolved address */
	const char *stage;        /* who decided: "allowlist", "hook", "hook-error", "address" */
	char route_host[256];     /* route(host, port) from a hook: connect there instead ("" = no) */
	uint16_t route_port;
	int route_is_ip;          /* 0, 4 or 6 */
};

/* Build a generation from conf_dir (enrollgate.lua, policy.lua) and the Lua bundle in
 * lua_dir. Returns NULL and fills err on any failure. stats may be NULL. */
struct eg_policy *eg_policy_load(const char *conf_dir, const char *lua_dir, struct eg_hook_stats *stats,
				 struct eg_load_error *err);

static inline struct eg_policy *eg_policy_ref(struct eg_policy *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}
void eg_policy_unref(struct eg_policy *p);

/* Request stage: allowlist by name, then on_request/on_connect. Always fills v. */
void eg_policy_decide(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v);

/* Address stage, after resolution: may turn an allow into a deny (SSRF / rebinding). */
void eg_policy_check_addr(struct eg_policy *p, const struct sockaddr *sa, uint16_t port, struct eg_verdict *v);

/* Tunnel stage: SNI from the ClientHello (NULL if none). */
void eg_policy_client_hello(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v);

/* Enrollment stage: on_enroll(ctx) of est.lua. nil or allow() lets the request go on; deny(),
 * an error, a timeout or a missing hook refuse it. Always fills v. */
void eg_policy_enroll(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v);

/* CMP stage: on_message(ctx) of cmp.lua, like eg_policy_enroll. Always fills v. */
void eg_policy_cmp(struct eg_policy *p, const struct eg_request_info *ri, struct eg_verdict *v);

/* Longest-prefix protocol route for an origin-form path, or NULL. */
const struct eg_route *eg_policy_route(const struct eg_policy *p, const char *path, size_t n);

size_t eg_policy_lua_memory(const struct eg_policy *p);
/* A full garbage collection of the generation's Lua state (on the loop thread, which owns it). */
void eg_policy_collect(struct eg_policy *p);

/* Line of the first occurrence of needle in file (1-based), 0 if none: points load errors
 * about table contents (which Lua cannot locate) at a line. */
int eg_find_line(const char *file, const char *needle);

#endif
