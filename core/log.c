/* log.c: JSON-lines logger (see log.h). Single-threaded by design: only the event-loop
 * thread logs; the reload builder thread reports its result back instead of logging. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum eg_log_level log_level = EG_LOG_INFO;
static char out_buf[64 * 1024];
static size_t out_len;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

static int worker_slot;  /* > 0: every record says "worker":K */
static int shared_out;   /* stderr shared with other processes: whole lines of at most PIPE_BUF per write */

void eg_log_set_level(enum eg_log_level lvl) { log_level = lvl; }

void eg_log_set_worker(int slot, int shared)
{
	worker_slot = slot;
	shared_out = shared;
}
enum eg_log_level eg_log_get_level(void) { return log_level; }
int eg_log_enabled(enum eg_log_level lvl) { return lvl >= log_level; }

int eg_log_level_parse(const char *s, enum eg_log_level *out)
{
	for (int i = 0; i < 4; i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum eg_log_level)i;
			return 0;
		}
	}
	return -1;
}

size_t eg_json_escape(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	if (cap == 0)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[6];
		size_t tl;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\'; tmp[1] = (char)c; tl = 2;
		} else if (c == '\n') {
			tmp[0] = '\\'; tmp[1] = 'n'; tl = 2;
		} else if (c < 0x20 || c >= 0x7f) {
			/* Non-ASCII bytes are escaped too: log lines stay valid JSON whatever arrives. */
			tmp[0] = '\\'; tmp[1] = 'u'; tmp[2] = '0'; tmp[3] = '0';
			tmp[4] = hex[c >> 4]; tmp[5] = hex[c & 15]; tl = 6;
		} else {
			tmp[0] = (char)c; tl = 1;
		}
		if (o + tl >= cap)
			break;
		memcpy(out + o, tmp, tl);
		o += tl;
	}
	out[o] = '\0';
	return o;
}

static void jb_raw(struct eg_jbuf *j, const char *s, size_t n)
{
	/* keep 2 bytes for the closing "}\n" */
	if (j->len + n + 2 > sizeof(j->buf)) {
		j->truncated = 1;
		return;
	}
	memcpy(j->buf + j->len, s, n);
	j->len += n;
}

static void jb_key(struct eg_jbuf *j, const char *key)
{
	jb_raw(j, ",\"", 2);
	jb_raw(j, key, strlen(key));
	jb_raw(j, "\":", 2);
}

void eg_jbuf_strn(struct eg_jbuf *j, const char *key, const char *val, size_t n)
{
	char tmp[1024];
	jb_key(j, key);
	if (!val) {
		jb_raw(j, "null", 4);
		return;
	}
	size_t l = eg_json_escape(tmp, sizeof(tmp), val, n);
	jb_raw(j, "\"", 1);
	jb_raw(j, tmp, l);
	jb_raw(j, "\"", 1);
}

void eg_jbuf_str(struct eg_jbuf *j, const char *key, const char *val)
{
	eg_jbuf_strn(j, key, val, val ? strlen(val) : 0);
}

void eg_jbuf_int(struct eg_jbuf *j, const char *key, long long val)
{
	char tmp[32];
	int l = snprintf(tmp, sizeof(tmp), "%lld", val);
	jb_key(j, key);
	jb_raw(j, tmp, (size_t)l);
}

void eg_jbuf_double(struct eg_jbuf *j, const char *key, double val)
{
	char tmp[48];
	int l = snprintf(tmp, sizeof(tmp), "%.3f", val);
	jb_key(j, key);
	jb_raw(j, tmp, (size_t)l);
}

void eg_jbuf_begin(struct eg_jbuf *j, enum eg_log_level lvl, const char *event)
{
	struct timespec ts;
	struct tm tm;
	char tbuf[64];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(tbuf + n, sizeof(tbuf) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	j->len = 0;
	j->truncated = 0;
	jb_raw(j, "{\"ts\":\"", 7);
	jb_raw(j, tbuf, strlen(tbuf));
	jb_raw(j, "\"", 1);
	eg_jbuf_str(j, "level", level_names[lvl]);
	eg_jbuf_str(j, "event", event);
	if (worker_slot)
		eg_jbuf_int(j, "worker", worker_slot);
}

/* How much of out_buf from off goes in one write: all of it, or with other processes on the same
 * pipe whole lines of at most PIPE_BUF bytes (the kernel does not interleave such writes). */
static size_t chunk_at(size_t off)
{
	size_t n = out_len - off;
	if (!shared_out || n <= PIPE_BUF)
		return n;
	for (size_t i = PIPE_BUF; i > 0; i--)
		if (out_buf[off + i - 1] == '\n')
			return i;
	return n; /* a single line longer than PIPE_BUF */
}

void eg_log_flush(void)
{
	size_t off = 0;
	while (off < out_len) {
		ssize_t w = write(STDERR_FILENO, out_buf + off, chunk_at(off));
		if (w <= 0)
			break; /* stderr gone: drop, never block or crash the proxy */
		off += (size_t)w;
	}
	out_len = 0;
}

void eg_jbuf_emit(struct eg_jbuf *j)
{
	if (j->truncated) {
		const char *t = ",\"truncated\":true";
		size_t tl = strlen(t);
		if (j->len + tl + 2 <= sizeof(j->buf)) {
			memcpy(j->buf + j->len, t, tl);
			j->len += tl;
		}
	}
	j->buf[j->len++] = '}';
	j->buf[j->len++] = '\n';
	if (out_len + j->len > sizeof(out_buf))
		eg_log_flush();
	memcpy(out_buf + out_len, j->buf, j->len);
	out_len += j->len;
}

void eg_log(enum eg_log_level lvl, const char *event, const char *fmt, ...)
{
	struct eg_jbuf j;
	char msg[1024];
	va_list ap;
	if (!eg_log_enabled(lvl))
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	eg_jbuf_begin(&j, lvl, event);
	eg_jbuf_str(&j, "msg", msg);
	eg_jbuf_emit(&j);
	if (lvl >= EG_LOG_WARN)
		eg_log_flush();
}
