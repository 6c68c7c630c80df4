/* origin_pool.h: idle kept-alive origin connections of the forward proxy, shared between client
 * connections. A client that sends `Connection: close` (or goes away) leaves its upstream
 * connection here when the response ended cleanly; the next request for the same host:port,
 * from any client, takes it instead of connecting again, if it is one that may be sent again on
 * a new connection should this one turn out closed (a safe method without a body). Only the transport is shared: every
 * request is decided by the policy as before, and the connection's address is re-checked under
 * the request's generation. Connections that carried authentication are never put here
 * (proxy.c decides), so a connection-bound login (NTLM, Negotiate) stays with its client. */
#ifndef EG_ORIGIN_POOL_H
#define EG_ORIGIN_POOL_H

#include <stdint.h>
#include <sys/socket.h>

struct bufferevent;
struct eg_origin_pool;

#define EG_ORIGIN_POOL_MAX 64      /* idle connections kept, over all origins */
#define EG_ORIGIN_POOL_IDLE 15.0   /* seconds one is kept; one the origin closes goes at once */

struct eg_origin_pool *eg_origin_pool_new(void);
void eg_origin_pool_free(struct eg_origin_pool *p);   /* closes every connection; NULL is fine */
void eg_origin_pool_clear(struct eg_origin_pool *p);  /* closes every connection (drain) */
/* How long connections put from now on are kept (default EG_ORIGIN_POOL_IDLE; tests shorten it). */
void eg_origin_pool_set_idle(struct eg_origin_pool *p, double seconds);

/* Keep bev (connected to host:port at addr; no bytes pending either way) for reuse. The pool
 * owns it from here: its callbacks are the pool's, it is closed when the origin closes or
 * sends anything, after its idle time, or to make room (the longest idle goes first). */
void eg_origin_pool_put(struct eg_origin_pool *p, struct bufferevent *bev, const char *host, uint16_t port,
			const struct sockaddr *addr, int addrlen);

/* An idle connection to host:port that is still open (checked with recv(MSG_PEEK)), with its
 * address in *addr / *addrlen, or NULL. The caller owns it and sets its callbacks. */
struct bufferevent *eg_origin_pool_take(struct eg_origin_pool *p, const char *host, uint16_t port,
					struct sockaddr_storage *addr, int *addrlen);

/* Is an idle kept-alive connection still usable? One with nothing to read: end of file (the
 * peer closed it after its answer, whatever it had said), a TLS alert or stray bytes all make
 * it unusable. One recv(MSG_PEEK); also used by the relays' pool (upstream.c). */
int eg_idle_conn_alive(struct bufferevent *bev);

/* Idle connections held now (for /status and tests). */
int eg_origin_pool_count(const struct eg_origin_pool *p);

#endif
