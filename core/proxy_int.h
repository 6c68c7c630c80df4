/* proxy_int.h: what the two halves of a forward-proxy connection share, and nothing else
 * includes: proxy.c (accept, request head, policy decision, resolution and connect, teardown,
 * access log, error answers) and forward.c (relaying one request and its response: bodies both
 * ways, splice(2) for large responses, the response head, upstream events). */
#ifndef EG_PROXY_INT_H
#define EG_PROXY_INT_H

#include <sys/time.h>

#include "proxy.h"

struct bufferevent;

#define HIGH_WATER (256 * 1024)
#define PIPELINE_HOLD (64 * 1024) /* most bytes read ahead from a client while its request runs */

/* proxy.c */
double eg_px_now_ms(void);
void eg_px_set_tv(struct timeval *tv, double secs);
void eg_px_arm_timer(struct eg_conn *c, double secs);     /* the connection's one deadline */
void eg_px_free_upstream(struct eg_conn *c);              /* close the upstream connection */
void eg_px_release_upstream(struct eg_conn *c);           /* to the origin pool if clean, else close */
void eg_px_end_request(struct eg_conn *c);                /* DNS, address list, policy reference */
void eg_px_await_head(struct eg_conn *c, int first);      /* back to reading a request head */
void eg_px_resolve_and_connect(struct eg_conn *c);        /* a new upstream connection for the request */
void eg_px_connect_next(struct eg_conn *c);               /* the next resolved address */
void eg_px_upstream_connected(struct eg_conn *c);
int eg_px_safe_to_resend(const struct eg_conn *c);        /* GET, HEAD, OPTIONS, TRACE */
void eg_px_client_read_cb(struct bufferevent *bev, void *arg);
void eg_px_client_event_cb(struct bufferevent *bev, short what, void *arg);

/* forward.c */
void eg_px_upstream_read_cb(struct bufferevent *bev, void *arg);
void eg_px_upstream_event_cb(struct bufferevent *bev, short what, void *arg);
void eg_px_body_splice_end(struct eg_conn *c);            /* stop a spliced response body, if any */
void eg_px_body_splice_timer(struct eg_conn *c);          /* the connection's deadline while splicing */

#endif
