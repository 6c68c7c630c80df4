/* pipe_relay.h: one direction of a byte stream moved socket -> pipe -> socket with splice(2),
 * so relayed bytes never enter user space; with its own read and write events and
 * back-pressure (the source is not read while the pipe cannot be emptied). Used by CONNECT
 * tunnels (tunnel.c, both directions) and by large response bodies (proxy.c). */
#ifndef EG_PIPE_RELAY_H
#define EG_PIPE_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#define EG_PIPE_CHUNK (1024 * 1024)  /* asked of one splice call; the pipe's size bounds what moves */
#define EG_PIPE_SIZE (256 * 1024)    /* pipe capacity asked for (F_SETPIPE_SZ) */
#define EG_PIPE_BUDGET (1024 * 1024) /* bytes one pump moves before it yields to other connections */

struct eg_pipe_relay {
	int src, dst;              /* sockets, owned by the caller */
	int pipe_r, pipe_w;        /* -1 while closed */
	size_t in_pipe;            /* read from src, not yet written to dst */
	struct event *rev, *wev;   /* src readable, dst writable */
	unsigned reading : 1, writing : 1, eof : 1;
};

enum eg_pipe_result {
	EG_PIPE_ERROR = -1,        /* a socket error; errno says which */
	EG_PIPE_RUNNING = 0,       /* waiting for src or dst; the events are armed */
	EG_PIPE_DONE = 1,          /* src ended (eof) or the limit was reached, and all of it is delivered */
};

/* Zeroes r; after this eg_pipe_relay_free is always safe. */
void eg_pipe_relay_clear(struct eg_pipe_relay *r);
/* Opens the pipe and creates the events (cb(fd, what, arg) on either); does not arm them.
 * 0, or -1 with errno (EMFILE, ENOMEM). */
int eg_pipe_relay_init(struct eg_pipe_relay *r, struct event_base *base, int src, int dst,
		       event_callback_fn cb, void *arg);
/* Moves what can be moved now, at most *left bytes from src (decremented; UINT64_MAX: no
 * limit); adds what it read to *moved. Arms the events for what it waits for. */
enum eg_pipe_result eg_pipe_relay_pump(struct eg_pipe_relay *r, uint64_t *left, uint64_t *moved);
/* Arms the read event: the first pump runs when src has bytes (or its end). */
void eg_pipe_relay_start(struct eg_pipe_relay *r);
/* Disarms both events. */
void eg_pipe_relay_stop(struct eg_pipe_relay *r);
void eg_pipe_relay_free(struct eg_pipe_relay *r);

#endif
