/* policy_settings.c: <conf>/enrollgate.lua, the daemon's settings (listen, limits, log, dns,
 * admin, ...), into struct eg_settings with errors that name file, line and key; the defaults.
 * Part of the policy runtime (policy_int.h). */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "policy_int.h"

void eg_settings_defaults(struct eg_settings *s)
{
	memset(s, 0, sizeof(*s));
	snprintf(s->listen[0], sizeof(s->listen[0]), "127.0.0.1:48999");
	s->nlisten = 1;
	snprintf(s->admin, sizeof(s->admin), "127.0.0.1:48998");
	s->workers = 1;
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

int eg_workers_parse(const char *s, int *out)
{
	if (strcmp(s, "auto") == 0) {
		*out = EG_WORKERS_AUTO;
		return 0;
	}
	char *end;
	long n = strtol(s, &end, 10);
	if (end == s || *end || n < 1 || n > EG_MAX_WORKERS)
		return -1;
	*out = (int)n;
	return 0;
}

int eg_workers_count(int workers)
{
	if (workers != EG_WORKERS_AUTO)
		return workers;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > EG_MAX_WORKERS ? EG_MAX_WORKERS : (int)n;
}

/* Read number t[key] into *out if present; range-checked. */
static int get_num(lua_State *L, int t, const char *section, const char *key, double lo, double hi, double *out,
		   struct load_ctx *lc, const char *file)
{
	int rc = 0;
	lua_getfield(L, t, key);
	if (!lua_isnil(L, -1)) {
		if (!lua_isnumber(L, -1)) {
			eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, key), "%s.%s: expected a number", section, key);
			rc = -1;
		} else {
			double v = lua_tonumber(L, -1);
			if (v < lo || v > hi) {
				eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, key), "%s.%s: must be between %g and %g",
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

int eg_pol_check_keys(lua_State *L, int t, const char *const *known, const char *section, struct load_ctx *lc,
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
				eg_pol_set_err(lc->err, stage, file, eg_find_line(file, k), "%s: unknown key '%s'", section, k);
				lua_pop(L, 2);
				return -1;
			}
		} else {
			eg_pol_set_err(lc->err, stage, file, 0, "%s: keys must be names", section);
			lua_pop(L, 2);
			return -1;
		}
		lua_pop(L, 1);
	}
	return 0;
}

int eg_pol_load_settings(lua_State *L, struct load_ctx *lc)
{
	struct eg_settings *s = &lc->p->settings;
	char file[600];
	double v;
	snprintf(file, sizeof(file), "%s/enrollgate.lua", lc->p->conf_dir);
	eg_settings_defaults(s);
	if (eg_pol_run_file(L, lc, file, "settings") < 0)
		return -1;
	int t = lua_gettop(L);
	static const char *const top[] = { "listen", "admin", "workers", "log", "limits", "dns", "relay", "lua", NULL };
	if (eg_pol_check_keys(L, t, top, "settings", lc, file, "settings") < 0)
		return -1;

	lua_getfield(L, t, "listen");
	if (lua_istable(L, -1)) {
		s->nlisten = 0;
		for (lua_Integer i = 1; i <= eg_pol_list_len(L, -1) && s->nlisten < EG_MAX_LISTEN; i++) {
			lua_geti(L, -1, i);
			if (!lua_isstring(L, -1)) {
				eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "listen"), "listen: expected \"ADDR:PORT\" strings");
				return -1;
			}
			snprintf(s->listen[s->nlisten++], sizeof(s->listen[0]), "%s", lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	} else if (!lua_isnil(L, -1)) {
		eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "listen"), "listen: expected a list");
		return -1;
	}
	lua_pop(L, 1);
	lua_getfield(L, t, "admin");
	if (lua_isstring(L, -1))
		snprintf(s->admin, sizeof(s->admin), "%s", lua_tostring(L, -1));
	lua_pop(L, 1);

	lua_getfield(L, t, "workers");
	if (!lua_isnil(L, -1) && (!lua_isstring(L, -1) || eg_workers_parse(lua_tostring(L, -1), &s->workers) < 0)) {
		eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "workers"),
			       "workers: expected \"auto\" or a number from 1 to %d", EG_MAX_WORKERS);
		return -1;
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "log");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		lua_getfield(L, lt, "level");
		if (lua_isstring(L, -1) && eg_log_level_parse(lua_tostring(L, -1), &s->log_level) < 0) {
			eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "level"), "log.level: expected debug, info, warn or error");
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
		if (eg_pol_check_keys(L, lt, known, "limits", lc, file, "settings") < 0)
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
		if (eg_pol_check_keys(L, lt, known, "dns", lc, file, "settings") < 0)
			return -1;
		lua_getfield(L, lt, "resolv_conf");
		if (lua_type(L, -1) == LUA_TSTRING) {
			const char *path = lua_tostring(L, -1);
			if (path[0] != '/' || strlen(path) >= sizeof(s->resolv_conf)) {
				eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "resolv_conf"),
					"dns.resolv_conf: expected an absolute path");
				return -1;
			}
			snprintf(s->resolv_conf, sizeof(s->resolv_conf), "%s", path);
		} else if (!lua_isnil(L, -1)) {
			eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "resolv_conf"), "dns.resolv_conf: expected a path");
			return -1;
		}
		lua_pop(L, 1);
	} else if (!lua_isnil(L, -1)) {
		eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "dns"), "dns: expected a table");
		return -1;
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "relay");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		static const char *const known[] = { "splice", NULL };
		if (eg_pol_check_keys(L, lt, known, "relay", lc, file, "settings") < 0)
			return -1;
		lua_getfield(L, lt, "splice");
		if (lua_isboolean(L, -1)) {
			s->tunnel_splice = lua_toboolean(L, -1);
		} else if (!lua_isnil(L, -1)) {
			eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "splice"), "relay.splice: expected true or false");
			return -1;
		}
		lua_pop(L, 1);
	} else if (!lua_isnil(L, -1)) {
		eg_pol_set_err(lc->err, "settings", file, eg_find_line(file, "relay"), "relay: expected a table");
		return -1;
	}
	lua_pop(L, 1);

	lua_getfield(L, t, "lua");
	if (lua_istable(L, -1)) {
		int lt = lua_gettop(L);
		static const char *const known[] = { "hook_instructions", "hook_time_ms", "memory_mb", NULL };
		if (eg_pol_check_keys(L, lt, known, "lua", lc, file, "settings") < 0)
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
