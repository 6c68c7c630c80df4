/* http_reply.h: small answers of enrollgate's own evhttp servers (EST, CMP): a one-line text
 * reply with the right reason phrase, and the client's address for logs. */
#ifndef EG_HTTP_REPLY_H
#define EG_HTTP_REPLY_H

#include <stddef.h>

struct evhttp_connection;
struct evhttp_request;
struct evbuffer;

/* The standard reason phrase of an HTTP status code. */
const char *eg_http_reason_phrase(int code);

/* A text/plain answer: status and a one-line reason. */
void eg_http_send_text(struct evhttp_request *req, int code, const char *reason);

/* evhttp_send_reply, with the answer laid out as one piece on a TLS connection (see
 * eg_http_one_record). */
void eg_http_send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body);

/* libevent's TLS bufferevent makes a record, and a write, of every piece of its output, and
 * evhttp queues a message's head and body apart. Called right after evhttp has queued one
 * message on conn, this joins the pieces when the whole output is that message (was_empty: the
 * output was empty before) and small, so that it leaves as one record. No-op for plain TCP. */
void eg_http_one_record(struct evhttp_connection *conn, int was_empty);

/* The length of conn's pending output (0 without a bufferevent), for eg_http_one_record. */
size_t eg_http_pending(struct evhttp_connection *conn);

/* "ip:port" ("[ip6]:port") of the request's peer into out. */
void eg_http_peer(struct evhttp_request *req, char *out, size_t cap);

#endif
