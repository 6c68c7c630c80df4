/* policy_int.h: what the three parts of the policy runtime share, and nothing else includes:
 * policy.c (the sandboxed loader and a generation's life), policy_settings.c (enrollgate.lua's
 * settings) and policy_hooks.c (running hooks under their budget, self-test vectors). */
#ifndef EG_POLICY_INT_H
#define EG_POLICY_INT_H

#include <lua.h>

#include "digest.h"
#include "policy.h"

#define HOOK_COUNT 1000 /* instructions between budget checks */
/* Budget for running the files at load time (top level of every file and module, self-tests
 * excepted: each of those runs under the hook budget). A load is off the hot path, but a file
 * that never finishes would block `check`, the reload builder and the drain on SIGTERM. */
#define EG_LOAD_INSTRUCTIONS 50000000L
#define EG_LOAD_TIME_MS 2000

/* Load-time context, reachable from the sandbox's require through the registry. */
struct load_ctx {
	struct eg_policy *p;
	struct eg_sha256 *sha;
	struct eg_load_error *err;
	char last_file[512];
};

/* Registry keys (their addresses): the load context, the policy, the ctx metatable. */
extern const char EG_POL_LOAD_CTX_KEY, EG_POL_POLICY_KEY, EG_POL_CTX_KEY;

/* policy.c */
void eg_pol_set_err(struct eg_load_error *e, const char *stage, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* A Lua error "file:line: message" split into the error record. */
void eg_pol_set_err_lua(struct eg_load_error *e, const char *stage, const char *fallback_file, const char *msg);
/* Length of a configuration list: the raw border (no __len metamethod runs). */
lua_Integer eg_pol_list_len(lua_State *L, int idx);
/* Load and run a file of the bundle in the sandbox: 0 with the table it returns on the stack,
 * or -1 with lc->err set (a load or run error, or a result that is not a table). */
int eg_pol_run_file(lua_State *L, struct load_ctx *lc, const char *path, const char *stage);

/* policy_settings.c */
/* Refuse keys of table t that known does not list (a typo must not pass as a default): 0, or
 * -1 with lc->err set for stage, naming file and the key's line. */
int eg_pol_check_keys(lua_State *L, int t, const char *const *known, const char *section, struct load_ctx *lc,
		      const char *file, const char *stage);
/* <conf>/enrollgate.lua into lc->p->settings. 0, or -1 with lc->err set. */
int eg_pol_load_settings(lua_State *L, struct load_ctx *lc);

/* policy_hooks.c */
/* Arm the instruction and time budget of what runs next in p's state. */
void eg_pol_start_budget(struct eg_policy *p, long instructions, long ms);
/* The count hook that enforces it (lua_sethook with HOOK_COUNT). */
void eg_pol_budget_hook(lua_State *L, lua_Debug *ar);
/* The metatable of the read-only ctx a hook receives, into the registry. */
void eg_pol_create_ctx_mt(lua_State *L);
/* Run the policy table's self-test vectors (at index pt) through its hooks. 0, or -1 with lc->err set. */
int eg_pol_run_selftests(struct eg_policy *p, lua_State *L, int pt, struct load_ctx *lc, const char *file);

#endif
