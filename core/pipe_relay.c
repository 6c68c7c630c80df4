/* pipe_relay.c: splice(2) relay of one direction; see pipe_relay.h. */
#include "pipe_relay.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

void eg_pipe_relay_clear(struct eg_pipe_relay *r)
{
	memset(r, 0, sizeof(*r));
	r->src = r->dst = r->pipe_r = r->pipe_w = -1;
}

int eg_pipe_relay_init(struct eg_pipe_relay *r, struct event_base *base, int src, int dst,
		       event_callback_fn cb, void *arg)
{
	int p[2];
	eg_pipe_relay_clear(r);
	r->src = src;
	r->dst = dst;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	r->pipe_r = p[0];
	r->pipe_w = p[1];
	/* a larger pipe moves more per splice call and wake-up; the kernel may refuse (per-user
	 * pipe page limits), and the default 64 KiB then does */
	(void)fcntl(p[1], F_SETPIPE_SZ, EG_PIPE_SIZE);
	r->rev = event_new(base, src, EV_READ | EV_PERSIST, cb, arg);
	r->wev = event_new(base, dst, EV_WRITE | EV_PERSIST, cb, arg);
	if (!r->rev || !r->wev) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static void watch(struct eg_pipe_relay *r, int read, int write)
{
	if (read != r->reading) {
		if (read)
			event_add(r->rev, NULL);
		else
			event_del(r->rev);
		r->reading = (unsigned)read;
	}
	if (write != r->writing) {
		if (write)
			event_add(r->wev, NULL);
		else
			event_del(r->wev);
		r->writing = (unsigned)write;
	}
}

void eg_pipe_relay_start(struct eg_pipe_relay *r)
{
	watch(r, 1, 0);
}

void eg_pipe_relay_stop(struct eg_pipe_relay *r)
{
	if (r->rev && r->wev)
		watch(r, 0, 0);
}

enum eg_pipe_result eg_pipe_relay_pump(struct eg_pipe_relay *r, uint64_t *left, uint64_t *moved)
{
	size_t budget = EG_PIPE_BUDGET;
	for (;;) {
		while (r->in_pipe > 0) {
			ssize_t m = splice(r->pipe_r, NULL, r->dst, NULL, r->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (m > 0) {
				r->in_pipe -= (size_t)m;
				continue;
			}
			if (m < 0 && errno == EAGAIN)
				break;
			if (m == 0)
				errno = EPIPE;
			return EG_PIPE_ERROR;
		}
		if (r->in_pipe > 0 || r->eof || *left == 0 || budget == 0)
			break;
		/* the pipe is empty here, so EAGAIN means that src has nothing now */
		size_t want = *left < EG_PIPE_CHUNK ? (size_t)*left : EG_PIPE_CHUNK;
		ssize_t n = splice(r->src, NULL, r->pipe_w, NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n > 0) {
			r->in_pipe = (size_t)n;
			if (*left != UINT64_MAX)
				*left -= (uint64_t)n;
			*moved += (uint64_t)n;
			budget = (size_t)n < budget ? budget - (size_t)n : 0;
			continue;
		}
		if (n == 0) {
			r->eof = 1;
			break;
		}
		if (errno == EAGAIN)
			break;
		return EG_PIPE_ERROR;
	}
	if (r->in_pipe == 0 && (r->eof || *left == 0)) {
		watch(r, 0, 0);
		return EG_PIPE_DONE;
	}
	/* back-pressure: while dst cannot take the pipe's bytes, src is not read */
	watch(r, r->in_pipe == 0, r->in_pipe > 0);
	return EG_PIPE_RUNNING;
}

void eg_pipe_relay_free(struct eg_pipe_relay *r)
{
	if (r->rev)
		event_free(r->rev);
	if (r->wev)
		event_free(r->wev);
	if (r->pipe_r >= 0)
		close(r->pipe_r);
	if (r->pipe_w >= 0)
		close(r->pipe_w);
	eg_pipe_relay_clear(r);
}
