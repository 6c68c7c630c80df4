/* conf_read.h: reading the tables of a protocol configuration file (est.lua, cmp.lua) into C
 * structures, with load errors that name the file, the line and the key (`enrollgate check`
 * prints them as file:line: message). */
#ifndef EG_CONF_READ_H
#define EG_CONF_READ_H

#include <stddef.h>

#include "tls.h"
#include "upstream.h"

struct lua_State;
struct eg_load_error;

struct eg_conf_reader {
	struct lua_State *L;
	const char *stage;             /* the load error's stage: "est", "cmp" */
	const char *file;              /* the file being read, for error locations */
	const char *conf_dir;          /* relative paths are relative to it */
	struct eg_load_error *err;
};

/* Fill the load error (line: the first occurrence of needle in the file, if not NULL). -1. */
int eg_conf_fail(const struct eg_conf_reader *r, const char *needle, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Every key of the table at index t is one of known (NULL-terminated). 0, or -1. */
int eg_conf_check_keys(const struct eg_conf_reader *r, int t, const char *const *known, const char *where);

/* Optional string field t[key] as a path (relative to conf_dir) into out; "" if absent. */
int eg_conf_path(const struct eg_conf_reader *r, int t, const char *key, char *out, size_t cap, const char *where);

/* Optional number field t[key] in [lo, hi] into *out (left alone if absent). */
int eg_conf_number(const struct eg_conf_reader *r, int t, const char *key, double lo, double hi, double *out,
		   const char *where);

/* Optional t.timeouts = { connect, tls, response } into *to, over the defaults 10, 10, 60. */
int eg_conf_timeouts(const struct eg_conf_reader *r, int t, struct eg_upstream_timeouts *to);

/* t.listen: a list of 1..max "ADDR:PORT" strings into listen[][cap]. */
int eg_conf_listen(const struct eg_conf_reader *r, int t, char *listen, size_t cap, int max, int *n);

/* Optional t.identity = { cert, key, passphrase_file } or { pkcs12, password_file }: the
 * appliance's client identity toward upstreams. *have is 0 when absent. */
int eg_conf_identity(const struct eg_conf_reader *r, int t, struct eg_tls_identity *id, int *have);

/* The first line of a secret file (without its line end) into out[0..cap): 1 to cap bytes.
 * 0 and *len set, or -1 (unreadable, empty, or longer than cap). */
int eg_conf_read_secret(const char *path, unsigned char *out, size_t cap, size_t *len);

/* t.upstreams: a list of 1..max URLs (https, or http too when allow_plain) into up. */
int eg_conf_upstreams(const struct eg_conf_reader *r, int t, const char *where, int allow_plain,
		      struct eg_upstream *up, int max, int *n);

#endif
