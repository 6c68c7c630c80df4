/* wake.c: cross-thread wake-ups of the event loop through an eventfd; see wake.h. */
#include "wake.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

struct eg_wake {
	int fd;                      /* eventfd: non-zero while items wait */
	struct event *ev;
	pthread_mutex_t lock;        /* guards head/tail */
	struct eg_wake_item *head, *tail;
};

/* On the loop: take every queued item, then run them in order. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct eg_wake *w = arg;
	uint64_t n;
	(void)what;
	(void)!read(fd, &n, sizeof(n));
	pthread_mutex_lock(&w->lock);
	struct eg_wake_item *it = w->head;
	w->head = w->tail = NULL;
	pthread_mutex_unlock(&w->lock);
	while (it) {
		struct eg_wake_item *next = it->next; /* (fn may free it) */
		it->fn(it->arg);
		it = next;
	}
}

struct eg_wake *eg_wake_new(struct event_base *base)
{
	struct eg_wake *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (w->fd < 0 || pthread_mutex_init(&w->lock, NULL) != 0) {
		if (w->fd >= 0)
			close(w->fd);
		free(w);
		return NULL;
	}
	w->ev = event_new(base, w->fd, EV_READ | EV_PERSIST, wake_cb, w);
	if (!w->ev || event_add(w->ev, NULL) < 0) {
		eg_wake_free(w);
		return NULL;
	}
	return w;
}

void eg_wake_free(struct eg_wake *w)
{
	if (!w)
		return;
	if (w->ev)
		event_free(w->ev);
	close(w->fd);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void eg_wake_post(struct eg_wake *w, struct eg_wake_item *item)
{
	const uint64_t one = 1;
	item->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = item;
	else
		w->head = item;
	w->tail = item;
	pthread_mutex_unlock(&w->lock);
	/* the counter cannot overflow in practice (one per post, reset by every wake-up) */
	(void)!write(w->fd, &one, sizeof(one));
}
