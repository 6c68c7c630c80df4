/* settings.h: core settings read from <conf>/enrollgate.lua (listeners, limits, Lua budgets). */
#ifndef EG_SETTINGS_H
#define EG_SETTINGS_H

#include <stddef.h>

#include "log.h"

#define EG_MAX_LISTEN 16
#define EG_MAX_WORKERS 64
#define EG_WORKERS_AUTO 0

struct eg_settings {
	char listen[EG_MAX_LISTEN][128];
	int nlisten;
	char admin[128];
	int workers;                /* forward-proxy processes; EG_WORKERS_AUTO: one per CPU */
	enum eg_log_level log_level;
	int access_log;

	size_t max_header_bytes;
	double header_timeout;
	double idle_timeout;
	double tunnel_idle_timeout;
	int max_connections;
	double dns_timeout;
	double connect_timeout;
	double response_timeout;
	double drain_timeout;

	int tunnel_splice;          /* running tunnels relay with splice(2) */
	char resolv_conf[256];      /* name servers (and search list) for the proxy's lookups */

	long hook_instructions;
	long hook_time_ms;
	size_t lua_memory;
};

void eg_settings_defaults(struct eg_settings *s);
/* "auto" or a count 1..EG_MAX_WORKERS -> *out (EG_WORKERS_AUTO for "auto"); -1 if neither. */
int eg_workers_parse(const char *s, int *out);
/* The number of processes a workers setting means on this machine (auto: online CPUs, at most
 * EG_MAX_WORKERS). */
int eg_workers_count(int workers);

#endif
