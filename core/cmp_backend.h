/* cmp_backend.h: where the CMP proxy sends a message that passed every check, and how the CA's
 * answer comes back. Each alias names its backend in cmp.lua (`backend = "http"`, the default):
 *   http   the alias' CA over HTTP(S), RFC 6712 (upstreams in order, failover, health memory,
 *          kept-alive connections: core/upstream.c), the message and the answer relayed as they are.
 * A store-and-forward backend, where the CA side fetches queued messages so that nothing ever
 * connects toward the CA network, is another implementation of this interface (a later issue). */
#ifndef EG_CMP_BACKEND_H
#define EG_CMP_BACKEND_H

#include <stddef.h>

struct event_base;
struct evdns_base;
struct evbuffer;
struct eg_cmp_conf;
struct eg_cmp_alias;

enum eg_cmp_backend_result {
	EG_CMP_BACKEND_ANSWERED,   /* the CA answered (any HTTP status) */
	EG_CMP_BACKEND_DOWN,       /* the CA could not be reached (the message did not get there) */
	EG_CMP_BACKEND_NO_ANSWER,  /* the message went out and no answer came in time */
	EG_CMP_BACKEND_BROKEN_ANSWER, /* the CA began its answer and it failed part-way */
};

struct eg_cmp_backend_answer {
	enum eg_cmp_backend_result result;
	int status;                /* ANSWERED: HTTP status of the CA's answer */
	const char *status_line;   /* its reason phrase, or NULL */
	const char *content_type;  /* or NULL */
	struct evbuffer *body;     /* the answer as the CA sent it; the callback may take its bytes */
	const char *upstream;      /* the CA that answered or was tried last, "" if none */
	int tried;                 /* DOWN: how many were tried (0: every one was marked down) */
};

typedef void (*eg_cmp_backend_cb)(const struct eg_cmp_backend_answer *a, void *arg);

struct eg_cmp_backend {
	const char *name;
	/* Per-process state of the backend (connection pools...), NULL on failure; and its end. */
	void *(*open)(struct event_base *base, struct evdns_base *dns);
	void (*close)(void *state);
	/* Send der[0..len) for alias a under conf (both owned by the generation the caller holds
	 * until cb has run). cb runs exactly once, possibly before send returns. */
	void (*send)(void *state, const struct eg_cmp_conf *conf, const struct eg_cmp_alias *a, const void *der,
		     size_t len, eg_cmp_backend_cb cb, void *arg);
};

#define EG_CMP_NBACKENDS 1

/* Every backend, indexed by the number an alias stores (struct eg_cmp_alias.backend). */
extern const struct eg_cmp_backend *const eg_cmp_backends[EG_CMP_NBACKENDS];

/* The index of the backend named name, or -1. */
int eg_cmp_backend_find(const char *name);

#endif
