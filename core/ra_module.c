/* ra_module.c: what the EST/CMP module offers the executable (see ra.h). */
#include "ra.h"

#include "cmp.h"
#include "cmp_conf.h"
#include "est.h"
#include "est_conf.h"

const struct eg_ra_ops eg_ra_module_ops = {
	.abi = EG_RA_ABI,
	.est_start = eg_est_start,
	.est_free = eg_est_free,
	.est_busy = eg_est_busy,
	.est_stop_accepting = eg_est_stop_accepting,
	.est_render_metrics = eg_est_render_metrics,
	.cmp_start = eg_cmp_start,
	.cmp_free = eg_cmp_free,
	.cmp_busy = eg_cmp_busy,
	.cmp_stop_accepting = eg_cmp_stop_accepting,
	.cmp_render_metrics = eg_cmp_render_metrics,
	.est_conf_load = eg_est_conf_load,
	.est_conf_errors = eg_est_conf_errors,
	.est_conf_free = eg_est_conf_free,
	.cmp_conf_load = eg_cmp_conf_load,
	.cmp_conf_errors = eg_cmp_conf_errors,
	.cmp_conf_free = eg_cmp_conf_free,
	.est_test_upstream = eg_est_test_upstream,
	.est_hash_password = eg_est_hash_password,
};
