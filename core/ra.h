/* ra.h: the registration-authority half of enrollgate (EST, CMP, their upstream TLS client,
 * `hash-password`, `test-upstream`) is the one part that needs OpenSSL, and it is built as a
 * module, enrollgate-ra.so, that the executable loads only when a configuration has est.lua or
 * cmp.lua (or a command needs it). A forward proxy alone then never maps OpenSSL: 2 MiB of its
 * resident memory (docs/performance.md). The executable exports its own functions for the module.
 *
 * The core calls the module through the wrappers below: before the module is loaded there is no
 * EST or CMP state, and each wrapper does what the missing half would (nothing, 0). Test programs
 * link the module's objects in, and eg_ra_load() then returns those instead of loading a file. */
#ifndef EG_RA_H
#define EG_RA_H

#include <stddef.h>
#include <stdio.h>

#define EG_RA_ABI 1 /* bumped whenever struct eg_ra_ops changes */

struct eg_server;
struct eg_est;
struct eg_cmp;
struct eg_est_conf;
struct eg_cmp_conf;
struct eg_policy;
struct eg_load_error;
struct evbuffer;
struct lua_State;

struct eg_ra_ops {
	int abi;
	int (*est_start)(struct eg_server *srv);
	void (*est_free)(struct eg_est *e);
	int (*est_busy)(const struct eg_est *e);
	void (*est_stop_accepting)(struct eg_est *e);
	void (*est_render_metrics)(struct eg_est *e, struct evbuffer *b);
	int (*cmp_start)(struct eg_server *srv);
	void (*cmp_free)(struct eg_cmp *c);
	int (*cmp_busy)(const struct eg_cmp *c);
	void (*cmp_stop_accepting)(struct eg_cmp *c);
	void (*cmp_render_metrics)(struct eg_cmp *c, struct evbuffer *b);
	int (*est_conf_load)(struct lua_State *L, int idx, const char *conf_dir, const char *file,
			     struct eg_est_conf **out, struct eg_load_error *err);
	int (*est_conf_errors)(struct lua_State *L, int idx, struct eg_est_conf *c, struct eg_load_error *err);
	void (*est_conf_free)(struct eg_est_conf *c);
	int (*cmp_conf_load)(struct lua_State *L, int idx, const char *conf_dir, const char *file,
			     struct eg_cmp_conf **out, struct eg_load_error *err);
	int (*cmp_conf_errors)(struct lua_State *L, int idx, struct eg_cmp_conf *c, struct eg_load_error *err);
	void (*cmp_conf_free)(struct eg_cmp_conf *c);
	int (*est_test_upstream)(struct eg_policy *p, const char *label, FILE *out);
	int (*est_hash_password)(const char *password, char *out, size_t cap);
};

/* The module, loaded on the first call (thread-safe; it stays loaded). NULL with the reason in
 * why[cap] when it cannot be: the caller fails closed (a configuration that needs it does not
 * load). ENROLLGATE_RA_MODULE names another file; the default is the build tree's module for a
 * binary in the build tree, else the installed one. */
const struct eg_ra_ops *eg_ra_load(char *why, size_t cap);
/* The module if loaded, else NULL. */
const struct eg_ra_ops *eg_ra(void);

static inline int eg_ra_est_start(struct eg_server *srv) { return eg_ra() ? eg_ra()->est_start(srv) : 0; }
static inline int eg_ra_cmp_start(struct eg_server *srv) { return eg_ra() ? eg_ra()->cmp_start(srv) : 0; }
static inline void eg_ra_est_free(struct eg_est *e) { if (e && eg_ra()) eg_ra()->est_free(e); }
static inline void eg_ra_cmp_free(struct eg_cmp *c) { if (c && eg_ra()) eg_ra()->cmp_free(c); }
static inline int eg_ra_est_busy(const struct eg_est *e) { return e && eg_ra() ? eg_ra()->est_busy(e) : 0; }
static inline int eg_ra_cmp_busy(const struct eg_cmp *c) { return c && eg_ra() ? eg_ra()->cmp_busy(c) : 0; }
static inline void eg_ra_est_stop_accepting(struct eg_est *e) { if (e && eg_ra()) eg_ra()->est_stop_accepting(e); }
static inline void eg_ra_cmp_stop_accepting(struct eg_cmp *c) { if (c && eg_ra()) eg_ra()->cmp_stop_accepting(c); }
static inline void eg_ra_est_render_metrics(struct eg_est *e, struct evbuffer *b)
{
	if (eg_ra())
		eg_ra()->est_render_metrics(e, b);
}
static inline void eg_ra_cmp_render_metrics(struct eg_cmp *c, struct evbuffer *b)
{
	if (eg_ra())
		eg_ra()->cmp_render_metrics(c, b);
}
static inline void eg_ra_est_conf_free(struct eg_est_conf *c) { if (c && eg_ra()) eg_ra()->est_conf_free(c); }
static inline void eg_ra_cmp_conf_free(struct eg_cmp_conf *c) { if (c && eg_ra()) eg_ra()->cmp_conf_free(c); }

#endif
