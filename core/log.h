/* log.h: JSON-lines logging to stderr.
 *
 * Every record is one line of JSON. Records are built with a small builder so that
 * every value is escaped; nothing from the network reaches the output unescaped.
 * Output is buffered and flushed at the end of each event-loop pass (eg_log_flush),
 * so a busy proxy does not pay one write(2) per record. */
#ifndef EG_LOG_H
#define EG_LOG_H

#include <stddef.h>
#include <stdint.h>

enum eg_log_level { EG_LOG_DEBUG = 0, EG_LOG_INFO, EG_LOG_WARN, EG_LOG_ERROR };

/* A JSON object under construction (fixed-size: long values are truncated, never overflow). */
struct eg_jbuf {
	char buf[2048];
	size_t len;
	int truncated;
};

void eg_log_set_level(enum eg_log_level lvl);
/* Records of worker slot K > 0 say "worker":K; shared: stderr is written by more than one process. */
void eg_log_set_worker(int slot, int shared);
enum eg_log_level eg_log_get_level(void);
int eg_log_level_parse(const char *s, enum eg_log_level *out); /* 0 ok, -1 unknown name */
int eg_log_enabled(enum eg_log_level lvl);

/* Start a record: {"ts":"...","level":"...","event":"<event>" */
void eg_jbuf_begin(struct eg_jbuf *j, enum eg_log_level lvl, const char *event);
void eg_jbuf_str(struct eg_jbuf *j, const char *key, const char *val);     /* val may be NULL: null */
void eg_jbuf_strn(struct eg_jbuf *j, const char *key, const char *val, size_t n);
void eg_jbuf_int(struct eg_jbuf *j, const char *key, long long val);
void eg_jbuf_double(struct eg_jbuf *j, const char *key, double val);
/* Close the object and emit it. */
void eg_jbuf_emit(struct eg_jbuf *j);

/* Append s (n bytes) to out as JSON string contents (no quotes); returns bytes written,
 * never more than cap-1; used by the admin /status renderer too. */
size_t eg_json_escape(char *out, size_t cap, const char *s, size_t n);

/* Convenience: one record with a "msg" field (printf-style). */
void eg_log(enum eg_log_level lvl, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

void eg_log_flush(void);

#endif
