/* settings.h: core settings read from <conf>/enrollgate.lua (listeners, limits, Lua budgets). */
#ifndef EG_SETTINGS_H
#define EG_SETTINGS_H

#include <stddef.h>

#include "log.h"

#define EG_MAX_LISTEN 16

struct eg_settings {
	char listen[EG_MAX_LISTEN][128];
	int nlisten;
	char admin[128];
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

#endif
