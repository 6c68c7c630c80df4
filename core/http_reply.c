/* http_reply.c: text answers and peer names for enrollgate's evhttp servers; see http_reply.h. */
#include "http_reply.h"

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>

const char *eg_http_reason_phrase(int code)
{
	switch (code) {
	case 200: return "OK";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 421: return "Misdirected Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return code >= 500 ? "Server Error" : code >= 400 ? "Client Error" : "OK";
	}
}

void eg_http_send_text(struct evhttp_request *req, int code, const char *reason)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", "text/plain; charset=utf-8");
	if (b)
		evbuffer_add_printf(b, "%s\n", reason);
	eg_http_send_reply(req, code, eg_http_reason_phrase(code), b);
	if (b)
		evbuffer_free(b);
}

#define ONE_RECORD_MAX 16384  /* a TLS record's payload */

size_t eg_http_pending(struct evhttp_connection *conn)
{
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	return bev ? evbuffer_get_length(bufferevent_get_output(bev)) : 0;
}

void eg_http_one_record(struct evhttp_connection *conn, int was_empty)
{
	struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
	if (!was_empty || !bev || !bufferevent_openssl_get_ssl(bev))
		return;
	/* (an empty output before means no record is half written, whose bytes must stay put) */
	struct evbuffer *out = bufferevent_get_output(bev);
	if (evbuffer_get_length(out) <= ONE_RECORD_MAX)
		evbuffer_pullup(out, -1);
}

void eg_http_send_reply(struct evhttp_request *req, int code, const char *reason, struct evbuffer *body)
{
	/* the connection outlives the call (evhttp frees it only from the loop), the request may not */
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	int was_empty = eg_http_pending(conn) == 0;
	evhttp_send_reply(req, code, reason, body);
	eg_http_one_record(conn, was_empty);
}

void eg_http_peer(struct evhttp_request *req, char *out, size_t cap)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port = 0;
	if (conn)
		evhttp_connection_get_peer(conn, &addr, &port);
	snprintf(out, cap, strchr(addr ? addr : "", ':') ? "[%s]:%u" : "%s:%u", addr ? addr : "?", port);
}
