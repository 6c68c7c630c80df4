/* cmp.h: the CMP proxy (RFC 4210/9480 messages over HTTP, RFC 6712). Clients POST PKIMessages to
 * /.well-known/cmp, /.well-known/cmp/p/<alias>[/<operation>] or <legacy_prefix><alias>;
 * enrollgate parses each message (core/cmp_msg.c), checks its type and protection against the
 * alias (MAC keys, signature issuers and CRLs), asks on_message in cmp.lua, and forwards what
 * passes unchanged to the alias' upstream CA, relaying the CA's answer unchanged. What it
 * refuses is answered with an unprotected CMP error message (failInfo and text from
 * policies.errors) and never reaches the CA. Configuration: <conf>/cmp.lua (cmp_conf.h). */
#ifndef EG_CMP_H
#define EG_CMP_H

struct eg_server;
struct eg_cmp;
struct evbuffer;

/* Bind the listeners of the live generation's cmp.lua (if any) and serve on srv's loop.
 * 0 (also when CMP is not configured), -1 on failure (logged). */
int eg_cmp_start(struct eg_server *srv);
void eg_cmp_free(struct eg_cmp *c);

/* Messages being answered (0 when c is NULL), and the end of new connections (drain). */
int eg_cmp_busy(const struct eg_cmp *c);
void eg_cmp_stop_accepting(struct eg_cmp *c);

/* Prometheus lines: enrollgate_cmp_messages_total{alias,type,result}. Nothing when c is NULL. */
void eg_cmp_render_metrics(struct eg_cmp *c, struct evbuffer *b);

#endif
