/* wake.h: waking the event loop from another thread (the reload builder, the EST password
 * checks) without libevent's locks. A thread posts an item; its callback runs on the loop, in
 * the order posted. The loop itself never takes the lock: only a posting thread and the wake-up
 * (one eventfd, one persistent event) do, so the hot path stays lock-free. */
#ifndef EG_WAKE_H
#define EG_WAKE_H

struct event_base;
struct eg_wake;

/* What a thread posts; owned by the poster (no allocation, so posting cannot fail). Untouched by
 * the poster from eg_wake_post on: the callback may free it. */
struct eg_wake_item {
	void (*fn)(void *arg);
	void *arg;
	struct eg_wake_item *next;
};

struct eg_wake *eg_wake_new(struct event_base *base);   /* NULL on failure */
void eg_wake_free(struct eg_wake *w);                    /* items still queued are not run */

/* From any thread: run item->fn(item->arg) on w's loop soon. */
void eg_wake_post(struct eg_wake *w, struct eg_wake_item *item);

#endif
