/* origin_pool.c: idle origin connections shared between client connections; see origin_pool.h.
 * A fixed array searched linearly: at most EG_ORIGIN_POOL_MAX entries, and a search is a few
 * string compares next to the connect(2) it saves. */
#include "origin_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

struct origin {
	struct eg_origin_pool *pool;
	struct bufferevent *bev;   /* NULL: free slot */
	char host[256];
	uint16_t port;
	struct sockaddr_storage addr;
	int addrlen;
	double idle_since;
};

struct eg_origin_pool {
	struct origin slot[EG_ORIGIN_POOL_MAX];
	int count;
	double idle;               /* seconds a connection is kept (EG_ORIGIN_POOL_IDLE) */
};

static double mono(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct eg_origin_pool *eg_origin_pool_new(void)
{
	struct eg_origin_pool *p = calloc(1, sizeof(struct eg_origin_pool));
	if (p)
		p->idle = EG_ORIGIN_POOL_IDLE;
	return p;
}

void eg_origin_pool_set_idle(struct eg_origin_pool *p, double seconds)
{
	if (p && seconds > 0)
		p->idle = seconds;
}

static void drop(struct eg_origin_pool *p, struct origin *o)
{
	bufferevent_free(o->bev);
	o->bev = NULL;
	p->count--;
}

void eg_origin_pool_clear(struct eg_origin_pool *p)
{
	for (int i = 0; p && i < EG_ORIGIN_POOL_MAX; i++)
		if (p->slot[i].bev)
			drop(p, &p->slot[i]);
}

void eg_origin_pool_free(struct eg_origin_pool *p)
{
	eg_origin_pool_clear(p);
	free(p);
}

/* The origin closed an idle connection, sent something unasked, or it idled out: it goes. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
	struct origin *o = arg;
	(void)bev;
	drop(o->pool, o);
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	idle_read_cb(bev, arg);
}

void eg_origin_pool_put(struct eg_origin_pool *p, struct bufferevent *bev, const char *host, uint16_t port,
			const struct sockaddr *addr, int addrlen)
{
	struct origin *o = NULL;
	size_t hl = strlen(host);
	if (!p || hl >= sizeof(o->host) || addrlen <= 0 || (size_t)addrlen > sizeof(o->addr)) {
		bufferevent_free(bev);
		return;
	}
	for (int i = 0; i < EG_ORIGIN_POOL_MAX && !o; i++)
		if (!p->slot[i].bev)
			o = &p->slot[i];
	if (!o) {   /* full: the longest idle one makes room */
		o = &p->slot[0];
		for (int i = 1; i < EG_ORIGIN_POOL_MAX; i++)
			if (p->slot[i].idle_since < o->idle_since)
				o = &p->slot[i];
		drop(p, o);
	}
	o->pool = p;
	o->bev = bev;
	memcpy(o->host, host, hl + 1);
	o->port = port;
	memcpy(&o->addr, addr, (size_t)addrlen);
	o->addrlen = addrlen;
	o->idle_since = mono();
	p->count++;
	struct timeval idle = { (time_t)p->idle, (suseconds_t)((p->idle - (double)(time_t)p->idle) * 1e6) };
	bufferevent_setcb(bev, idle_read_cb, NULL, idle_event_cb, o);
	bufferevent_setwatermark(bev, EV_READ, 0, 0);
	bufferevent_set_timeouts(bev, &idle, NULL);
	bufferevent_enable(bev, EV_READ);
	bufferevent_disable(bev, EV_WRITE);
}

int eg_idle_conn_alive(struct bufferevent *bev)
{
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	char b;
	if (fd < 0 || evbuffer_get_length(bufferevent_get_input(bev)) > 0)
		return 0;
	return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

struct bufferevent *eg_origin_pool_take(struct eg_origin_pool *p, const char *host, uint16_t port,
					struct sockaddr_storage *addr, int *addrlen)
{
	if (!p || p->count == 0)
		return NULL;
	double now = mono();
	for (int i = 0; i < EG_ORIGIN_POOL_MAX; i++) {
		struct origin *o = &p->slot[i];
		if (!o->bev || o->port != port || strcmp(o->host, host) != 0)
			continue;
		if (now - o->idle_since > p->idle || !eg_idle_conn_alive(o->bev)) {
			drop(p, o);
			continue;
		}
		struct bufferevent *bev = o->bev;
		memcpy(addr, &o->addr, (size_t)o->addrlen);
		*addrlen = o->addrlen;
		o->bev = NULL;
		p->count--;
		bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
		bufferevent_set_timeouts(bev, NULL, NULL);
		return bev;
	}
	return NULL;
}

int eg_origin_pool_count(const struct eg_origin_pool *p)
{
	return p ? p->count : 0;
}
