/* metrics.h: process-wide counters, rendered as Prometheus text by admin.c. */
#ifndef EG_METRICS_H
#define EG_METRICS_H

#include <stdint.h>

#include "policy.h"

struct eg_metrics {
	uint64_t requests_allowed;
	uint64_t requests_denied;
	uint64_t responses_by_status[600];
	uint64_t connections_total;
	uint64_t connections_refused;  /* over max_connections */
	uint64_t accept_pauses;        /* accept failed (EMFILE...): listeners paused */
	int64_t active_connections;
	int64_t active_tunnels;
	uint64_t tunnels_total;
	uint64_t tunnels_spliced;      /* handed over to splice(2) */
	uint64_t bodies_spliced;       /* response bodies relayed with splice(2) */
	uint64_t bytes_client_to_upstream;
	uint64_t bytes_upstream_to_client;
	uint64_t reloads_ok;
	uint64_t reloads_failed;
	struct eg_hook_stats hooks;
};

#endif
