/* sni.c: TLS ClientHello server_name extraction (RFC 8446 §4.1.2, RFC 6066 §3). */
#include "sni.h"
#include "http_parse.h"

#include <stdint.h>

/* Bounds-checked reader over one byte range. */
struct rd {
	const unsigned char *p;
	size_t n;
	int bad;
};

static unsigned get(struct rd *r, size_t bytes)
{
	unsigned v = 0;
	if (r->bad || r->n < bytes) {
		r->bad = 1;
		return 0;
	}
	for (size_t i = 0; i < bytes; i++)
		v = (v << 8) | r->p[i];
	r->p += bytes;
	r->n -= bytes;
	return v;
}

static struct rd sub(struct rd *r, size_t len)
{
	struct rd s = { r->p, len, 0 };
	if (r->bad || r->n < len) {
		r->bad = 1;
		s.bad = 1;
		s.n = 0;
		return s;
	}
	r->p += len;
	r->n -= len;
	return s;
}

enum eg_sni_result eg_sni_parse(const unsigned char *buf, size_t len, char *out, size_t cap)
{
	if (len >= 1 && buf[0] != 0x16)
		return EG_SNI_NOT_TLS;
	if (len >= 2 && buf[1] != 0x03)
		return EG_SNI_NOT_TLS;
	if (len < 5)
		return EG_SNI_MORE;
	size_t rlen = ((size_t)buf[3] << 8) | buf[4];
	if (rlen == 0 || rlen > 16384 + 2048)
		return EG_SNI_NOT_TLS;
	if (len < 5 + rlen)
		return EG_SNI_MORE;
	struct rd rec = { buf + 5, rlen, 0 };
	if (get(&rec, 1) != 1) /* client_hello */
		return EG_SNI_NOT_TLS;
	size_t hlen = get(&rec, 3);
	/* A ClientHello longer than its first record is cut to what we have: extensions that
	 * are not there simply do not count (server_name normally comes early). */
	struct rd h = { rec.p, hlen < rec.n ? hlen : rec.n, 0 };
	get(&h, 2);  /* legacy_version */
	sub(&h, 32); /* random */
	sub(&h, get(&h, 1)); /* session id */
	sub(&h, get(&h, 2)); /* cipher suites */
	sub(&h, get(&h, 1)); /* compression */
	if (h.bad)
		return hlen <= rec.n ? EG_SNI_NOT_TLS : EG_SNI_ABSENT;
	if (h.n == 0)
		return EG_SNI_ABSENT;
	struct rd ext = sub(&h, get(&h, 2));
	if (ext.bad)
		ext = (struct rd){ h.p, h.n, 0 }; /* truncated: scan what is there */
	while (ext.n >= 4) {
		unsigned type = get(&ext, 2);
		size_t elen = get(&ext, 2);
		struct rd e = sub(&ext, elen);
		if (e.bad)
			return EG_SNI_ABSENT;
		if (type != 0)
			continue;
		struct rd list = sub(&e, get(&e, 2));
		while (list.n >= 3 && !list.bad) {
			unsigned nt = get(&list, 1);
			size_t nl = get(&list, 2);
			struct rd name = sub(&list, nl);
			if (name.bad)
				return EG_SNI_NOT_TLS;
			if (nt != 0)
				continue;
			if (eg_http_normalize_host((const char *)name.p, name.n, out, cap) != 0)
				return EG_SNI_NOT_TLS; /* SNI must be a DNS name, never an IP literal */
			return EG_SNI_FOUND;
		}
		return EG_SNI_NOT_TLS;
	}
	return EG_SNI_ABSENT;
}
