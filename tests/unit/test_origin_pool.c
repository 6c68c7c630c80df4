/* test_origin_pool.c: unit tests of the shared idle origin connections (core/origin_pool.c):
 * matching by host and port, liveness checks, eviction when full and the idle expiry. The
 * "origins" are the far ends of socket pairs: whether the pool still holds a connection shows
 * there as end of file once it has closed its end. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "origin_pool.h"

static struct event_base *base;

static int setup(void **state)
{
	(void)state;
	base = event_base_new();
	return base ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	event_base_free(base);
	return 0;
}

/* A connected pair: the pool's end as a bufferevent, the origin's end in *peer. */
static struct bufferevent *conn(int *peer)
{
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	evutil_make_socket_nonblocking(sv[0]);
	evutil_make_socket_nonblocking(sv[1]);
	struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	*peer = sv[1];
	return bev;
}

static struct sockaddr_in addr_of(uint16_t port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
	inet_pton(AF_INET, "192.0.2.7", &sin.sin_addr);
	return sin;
}

static void put(struct eg_origin_pool *p, struct bufferevent *bev, const char *host, uint16_t port)
{
	struct sockaddr_in sin = addr_of(port);
	eg_origin_pool_put(p, bev, host, port, (const struct sockaddr *)&sin, sizeof(sin));
}

/* Has the pool closed its end of the pair whose far end is peer? (libevent closes a freed
 * bufferevent's socket from the loop: one pass of it first) */
static int closed_by_pool(int peer)
{
	char b;
	event_base_loop(base, EVLOOP_NONBLOCK);
	ssize_t r = recv(peer, &b, 1, MSG_DONTWAIT);
	return r == 0 || (r < 0 && errno == ECONNRESET); /* (reset: it had unread bytes) */
}

/* Run the loop for s seconds. */
static void run_for(double s)
{
	struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };
	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void test_take_matches_host_and_port(void **state)
{
	(void)state;
	struct eg_origin_pool *p = eg_origin_pool_new();
	int peer;
	struct bufferevent *bev = conn(&peer);
	put(p, bev, "a.example", 80);
	assert_int_equal(eg_origin_pool_count(p), 1);
	struct sockaddr_storage ss;
	int sl = 0;
	assert_null(eg_origin_pool_take(p, "a.example", 81, &ss, &sl));
	assert_null(eg_origin_pool_take(p, "b.example", 80, &ss, &sl));
	assert_int_equal(eg_origin_pool_count(p), 1);
	assert_ptr_equal(eg_origin_pool_take(p, "a.example", 80, &ss, &sl), bev);
	assert_int_equal(eg_origin_pool_count(p), 0);
	struct sockaddr_in want = addr_of(80);
	assert_int_equal(sl, sizeof(want));
	assert_memory_equal(&ss, &want, sizeof(want));
	assert_null(eg_origin_pool_take(p, "a.example", 80, &ss, &sl)); /* taken: gone from the pool */
	assert_false(closed_by_pool(peer));                              /* and open, now the caller's */
	bufferevent_free(bev);
	close(peer);
	eg_origin_pool_free(p);
}

static void test_origin_closing_an_idle_connection(void **state)
{
	(void)state;
	struct eg_origin_pool *p = eg_origin_pool_new();
	struct sockaddr_storage ss;
	int sl, peer1, peer2;
	/* noticed by the loop (end of file on the idle connection) */
	put(p, conn(&peer1), "a.example", 80);
	close(peer1);
	run_for(0.1);
	assert_int_equal(eg_origin_pool_count(p), 0);
	/* or, before the loop has seen it, by the check in take() */
	put(p, conn(&peer2), "a.example", 80);
	close(peer2);
	assert_null(eg_origin_pool_take(p, "a.example", 80, &ss, &sl));
	assert_int_equal(eg_origin_pool_count(p), 0);
	eg_origin_pool_free(p);
}

static void test_origin_sending_unasked_bytes(void **state)
{
	(void)state;
	struct eg_origin_pool *p = eg_origin_pool_new();
	struct sockaddr_storage ss;
	int sl, peer1, peer2;
	put(p, conn(&peer1), "a.example", 80);
	assert_int_equal(write(peer1, "x", 1), 1);
	run_for(0.1);
	assert_int_equal(eg_origin_pool_count(p), 0);
	assert_true(closed_by_pool(peer1));
	close(peer1);
	put(p, conn(&peer2), "a.example", 80);
	assert_int_equal(write(peer2, "HTTP/1.1 408 Request Timeout\r\n\r\n", 33), 33);
	assert_null(eg_origin_pool_take(p, "a.example", 80, &ss, &sl));
	assert_int_equal(eg_origin_pool_count(p), 0);
	assert_true(closed_by_pool(peer2));
	close(peer2);
	eg_origin_pool_free(p);
}

static void test_full_pool_drops_the_longest_idle(void **state)
{
	(void)state;
	struct eg_origin_pool *p = eg_origin_pool_new();
	int peers[EG_ORIGIN_POOL_MAX + 1];
	char host[32];
	for (int i = 0; i <= EG_ORIGIN_POOL_MAX; i++) {
		snprintf(host, sizeof(host), "h%d.example", i);
		put(p, conn(&peers[i]), host, 80);
		if (i == 0)
			usleep(2000); /* h0 is the longest idle by a clear margin */
	}
	assert_int_equal(eg_origin_pool_count(p), EG_ORIGIN_POOL_MAX);
	assert_true(closed_by_pool(peers[0]));
	for (int i = 1; i <= EG_ORIGIN_POOL_MAX; i++)
		assert_false(closed_by_pool(peers[i]));
	struct sockaddr_storage ss;
	int sl;
	assert_null(eg_origin_pool_take(p, "h0.example", 80, &ss, &sl));
	struct bufferevent *last = eg_origin_pool_take(p, "h64.example", 80, &ss, &sl);
	assert_non_null(last);
	bufferevent_free(last);
	eg_origin_pool_free(p); /* closes the rest */
	for (int i = 1; i < EG_ORIGIN_POOL_MAX; i++)
		assert_true(closed_by_pool(peers[i]));
	for (int i = 0; i <= EG_ORIGIN_POOL_MAX; i++)
		close(peers[i]);
}

static void test_idle_expiry(void **state)
{
	(void)state;
	struct eg_origin_pool *p = eg_origin_pool_new();
	eg_origin_pool_set_idle(p, 0.2);
	struct sockaddr_storage ss;
	int sl, peer1, peer2;
	/* the loop closes it when its idle time is up */
	put(p, conn(&peer1), "a.example", 80);
	run_for(0.05);
	assert_int_equal(eg_origin_pool_count(p), 1);
	run_for(0.4);
	assert_int_equal(eg_origin_pool_count(p), 0);
	assert_true(closed_by_pool(peer1));
	close(peer1);
	/* and take() does not hand out one whose time is up, even before the loop has run */
	put(p, conn(&peer2), "a.example", 80);
	usleep(300000);
	assert_null(eg_origin_pool_take(p, "a.example", 80, &ss, &sl));
	assert_int_equal(eg_origin_pool_count(p), 0);
	assert_true(closed_by_pool(peer2));
	close(peer2);
	eg_origin_pool_free(p);
}

static void test_alive_check(void **state)
{
	(void)state;
	int peer;
	struct bufferevent *bev = conn(&peer);
	assert_true(eg_idle_conn_alive(bev));
	assert_int_equal(write(peer, "x", 1), 1);   /* a byte on the wire */
	assert_false(eg_idle_conn_alive(bev));
	bufferevent_enable(bev, EV_READ);           /* and once read into the input buffer */
	run_for(0.05);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(bev)), 1);
	assert_false(eg_idle_conn_alive(bev));
	bufferevent_free(bev);
	close(peer);
	bev = conn(&peer);
	shutdown(peer, SHUT_WR);                    /* end of file */
	assert_false(eg_idle_conn_alive(bev));
	bufferevent_free(bev);
	close(peer);
	assert_false(eg_idle_conn_alive(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_take_matches_host_and_port, setup, teardown),
		cmocka_unit_test_setup_teardown(test_origin_closing_an_idle_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_origin_sending_unasked_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_pool_drops_the_longest_idle, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_expiry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_alive_check, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
