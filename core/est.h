/* est.h: the EST registration authority (RFC 7030, RFC 8951). Devices enroll over HTTPS at
 * /.well-known/est[/<label>]/<op>; enrollgate authenticates them (TLS client certificate
 * and/or HTTP Basic), parses and checks the PKCS#10 (core/csr.c, then on_enroll in est.lua),
 * and relays accepted requests to the label's upstream CA over mutual TLS with its own
 * identity, failing over between upstreams. Configuration: <conf>/est.lua (est_conf.h). */
#ifndef EG_EST_H
#define EG_EST_H

#include <stdio.h>

struct eg_server;
struct eg_est;
struct eg_policy;

/* Bind the EST listeners of the live generation's est.lua (if any) and serve on srv's loop.
 * 0 (also when EST is not configured), -1 on failure (logged). */
int eg_est_start(struct eg_server *srv);
void eg_est_free(struct eg_est *e);

/* `enrollgate test-upstream LABEL`: for each upstream of the label, a mutual-TLS handshake with
 * the appliance identity and a GET cacerts; prints the identity, the TLS result and the CA
 * chain with SHA-256 fingerprints to out. 0 if at least one upstream works, else 1. */
int eg_est_test_upstream(struct eg_policy *p, const char *label, FILE *out);

/* Device requests being answered (0 when e is NULL), and the end of new connections: what a
 * SIGTERM drain waits for and does first. */
int eg_est_busy(const struct eg_est *e);
void eg_est_stop_accepting(struct eg_est *e);

struct evbuffer;
/* Prometheus lines: enrollgate_est_requests_total{label,result}. Nothing when e is NULL. */
void eg_est_render_metrics(struct eg_est *e, struct evbuffer *b);

#endif
