/* proxy.h: client connection state shared by proxy.c (HTTP forwarding) and tunnel.c (CONNECT). */
#ifndef EG_PROXY_H
#define EG_PROXY_H

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <sys/socket.h>

#include "http_parse.h"
#include "policy.h"
#include "server.h"

struct bufferevent;
struct eg_pipe_relay;
struct event;

struct evdns_getaddrinfo_request;

enum eg_conn_state {
	EG_ST_HEAD,        /* waiting for / reading a request head */
	EG_ST_RESOLVING,   /* asynchronous DNS */
	EG_ST_CONNECTING,  /* TCP connect to the origin */
	EG_ST_FORWARDING,  /* request body up, response down */
	EG_ST_SNI,         /* tunnel established, waiting for the ClientHello */
	EG_ST_TUNNEL,      /* bytes relayed both ways */
	EG_ST_CLOSING,     /* flushing a last response */
};

/* What a connection needs only while a request is on it: the parsed request and response heads
 * (slices into headbuf and the upstream buffer) and the request path. ~10 KiB, so an idle
 * keep-alive connection does not carry it: it is taken when request bytes arrive and given back
 * when the connection waits for its next request (eg_req_state_get/put; a small free list on the
 * server keeps this off malloc under load). */
struct eg_req_state {
	struct eg_http_head head;
	struct eg_http_head resp;
	char path_copy[2048];
	struct eg_req_state *next_free;
};

struct eg_conn {
	struct eg_server *srv;
	enum eg_conn_state state;
	struct bufferevent *cbev;  /* client */
	struct bufferevent *ubev;  /* upstream */
	struct event *timer;       /* the one deadline of the current state */
	char client[64];
	double t_start;

	/* idle list for drain */
	struct eg_conn *idle_next, *idle_prev;
	unsigned on_idle_list : 1;
	unsigned head_timer_is_idle : 1;

	/* current request */
	char *headbuf;             /* copy of the head; parsed slices point here */
	size_t headcap, headlen, scan_from;
	struct eg_req_state *rs;   /* parsed heads, from the moment request bytes arrive (see below) */
	struct eg_target target;
	char method[24];
	size_t path_len_noquery;
	int is_connect;
	int in_request;
	struct eg_policy *pol;     /* reference held while the request lives */
	uint64_t gen;              /* its generation number, for the access log */
	struct eg_verdict verdict;
	char deny_reason[200];
	char sni[256];

	/* upstream */
	struct evdns_getaddrinfo_request *dns_req;
	struct addrinfo *ai, *ai_next;
	struct sockaddr_storage up_addr;
	int up_addrlen;
	char up_host[256];
	uint16_t up_port;
	int up_reusable;
	unsigned up_idle : 1;      /* the upstream is between requests (its last response ended) */
	unsigned up_reused : 1;    /* the current request went over a connection used before */
	unsigned up_private : 1;   /* it carried authentication: never shared (origin_pool.h) */

	/* bodies */
	enum eg_body_kind req_body, resp_body;
	uint64_t req_remaining, resp_remaining;
	struct eg_chunked req_chunk, resp_chunk;
	int resp_status;
	unsigned req_done : 1, resp_head_done : 1, resp_done : 1, client_close : 1, response_started : 1;
	unsigned cbev_eof : 1, ubev_eof : 1, lingering : 1;
	unsigned cbev_shut : 1, ubev_shut : 1;  /* tunnel: shutdown(SHUT_WR) done on that side */

	/* accounting */
	uint64_t bytes_in, bytes_out;  /* client->upstream, upstream->client */
	double last_activity;
	double tunnel_idle_timeout;
	struct eg_tunnel_splice *splice; /* set once a running tunnel relays with splice(2) */
	struct eg_pipe_relay *body_splice; /* set while a response body relays with splice(2) */
};

#define EG_TUNNEL_HALF_CLOSED_TIMEOUT 30.0 /* idle seconds a tunnel lives after one side ended */
#define EG_IO_CHUNK (256 * 1024) /* most bytes one read or write system call moves */

void eg_bev_tune(struct bufferevent *bev);
void eg_bev_flush_now(struct bufferevent *bev);
void eg_conn_free(struct eg_conn *c);
void eg_conn_put_req_state(struct eg_conn *c); /* the request heads are no longer needed */
void eg_conn_send_error(struct eg_conn *c, int status, const char *reason);
void eg_conn_close_after_flush(struct eg_conn *c);
void eg_conn_log_access(struct eg_conn *c, int status);
void eg_conn_start_forward(struct eg_conn *c);
void eg_conn_pump_request(struct eg_conn *c);
const struct eg_settings *eg_conn_settings(struct eg_conn *c);

/* tunnel.c */
void eg_tunnel_start(struct eg_conn *c);
void eg_tunnel_upstream_read(struct eg_conn *c);
void eg_tunnel_upstream_event(struct eg_conn *c, short what);
void eg_tunnel_timer(struct eg_conn *c);
void eg_tunnel_free(struct eg_conn *c);

#endif
