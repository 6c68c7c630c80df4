/* test_wake.c: unit tests of core/wake.c: items posted from other threads run on the loop, all
 * of them, each once, in the order each thread posted them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <pthread.h>

#include <event2/event.h>

#include "wake.h"

#define THREADS 4
#define PER_THREAD 500

struct posted {
	struct eg_wake_item item;
	int thread, seq;
};

static struct {
	struct event_base *base;
	struct eg_wake *wake;
	pthread_t loop_thread;
	struct posted items[THREADS][PER_THREAD];
	int ran[THREADS][PER_THREAD];
	int last_seq[THREADS];
	int total, off_loop, out_of_order;
} t;

static void ran_cb(void *arg)
{
	struct posted *p = arg;
	if (!pthread_equal(pthread_self(), t.loop_thread))
		t.off_loop++;
	if (p->seq != t.last_seq[p->thread] + 1)
		t.out_of_order++;
	t.last_seq[p->thread] = p->seq;
	t.ran[p->thread][p->seq]++;
	if (++t.total == THREADS * PER_THREAD)
		event_base_loopbreak(t.base);
}

static void *poster(void *arg)
{
	int k = (int)(intptr_t)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		struct posted *p = &t.items[k][i];
		*p = (struct posted){ { ran_cb, p, NULL }, k, i };
		eg_wake_post(t.wake, &p->item);
	}
	return NULL;
}

static void give_up(evutil_socket_t fd, short what, void *arg)
{
	(void)fd, (void)what, (void)arg;
	event_base_loopbreak(t.base);
}

static void test_posts_from_threads_run_on_the_loop(void **state)
{
	(void)state;
	memset(&t, 0, sizeof(t));
	for (int k = 0; k < THREADS; k++)
		t.last_seq[k] = -1;
	t.base = event_base_new();
	assert_non_null(t.base);
	t.wake = eg_wake_new(t.base);
	assert_non_null(t.wake);
	t.loop_thread = pthread_self();
	struct event *timeout = evtimer_new(t.base, give_up, NULL);
	struct timeval tv = { 10, 0 };
	evtimer_add(timeout, &tv);
	pthread_t th[THREADS];
	for (int k = 0; k < THREADS; k++)
		assert_int_equal(pthread_create(&th[k], NULL, poster, (void *)(intptr_t)k), 0);
	event_base_dispatch(t.base);
	for (int k = 0; k < THREADS; k++)
		pthread_join(th[k], NULL);
	assert_int_equal(t.total, THREADS * PER_THREAD);
	assert_int_equal(t.off_loop, 0);
	assert_int_equal(t.out_of_order, 0);
	for (int k = 0; k < THREADS; k++)
		for (int i = 0; i < PER_THREAD; i++)
			assert_int_equal(t.ran[k][i], 1);
	event_free(timeout);
	eg_wake_free(t.wake);
	event_base_free(t.base);
}

static void test_an_item_may_free_itself(void **state)
{
	(void)state;
	struct event_base *base = event_base_new();
	struct eg_wake *w = eg_wake_new(base);
	assert_non_null(w);
	struct eg_wake_item *a = malloc(sizeof(*a)), *b = malloc(sizeof(*b));
	*a = (struct eg_wake_item){ free, a, NULL };
	*b = (struct eg_wake_item){ free, b, NULL };
	eg_wake_post(w, a);
	eg_wake_post(w, b);
	assert_int_equal(event_base_loop(base, EVLOOP_ONCE), 0); /* runs both (valgrind/ASan: no use after free) */
	eg_wake_free(w);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_posts_from_threads_run_on_the_loop),
		cmocka_unit_test(test_an_item_may_free_itself),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
