/* http_reply.h: small answers of enrollgate's own evhttp servers (EST, CMP): a one-line text
 * reply with the right reason phrase, and the client's address for logs. */
#ifndef EG_HTTP_REPLY_H
#define EG_HTTP_REPLY_H

#include <stddef.h>

struct evhttp_request;

/* The standard reason phrase of an HTTP status code. */
const char *eg_http_reason_phrase(int code);

/* A text/plain answer: status and a one-line reason. */
void eg_http_send_text(struct evhttp_request *req, int code, const char *reason);

/* "ip:port" ("[ip6]:port") of the request's peer into out. */
void eg_http_peer(struct evhttp_request *req, char *out, size_t cap);

#endif
