/* post_load.c — (bench/est.sh and bench/cmp.sh compile it into their work dir) a closed-loop
 * HTTP/1.1 POST load generator in C, so that the client of the EST and CMP benchmarks costs
 * little next to what it measures (the Python generators it replaces took about a core).
 *
 * Each thread keeps one connection (plain TCP or TLS with an optional client certificate),
 * POSTs the bodies given round robin and reads each answer (Content-Length, or to EOF when the
 * server closes). A connection the server closes is replaced; a kept-alive connection that
 * turns out closed before any answer byte is retried once on a new one, as curl does.
 * An answer counts when its status is 200, its Content-Type starts with -e, its body is not
 * empty and, with -g, the body is a CMP genp (PKIMessage whose body tag is [22]).
 *
 * build: cc -O2 -pthread -o post_load post_load.c -lssl -lcrypto -lm
 * usage: post_load -u http[s]://127.0.0.1:PORT/path -t CONTENT-TYPE -e EXPECT-TYPE -m METRIC-PREFIX
 *                  -r RATE-NAME:UNIT [-c THREADS] [-s SECONDS] [-g] [-A CAFILE -C CERT -K KEY -P PASS]
 *                  [-H "Name: value"]... BODY-FILE...
 * prints: PREFIX.RATE-NAME n UNIT, PREFIX.p50 / PREFIX.p99 (ms), PREFIX.errors (count).
 * Loopback only: the host must be 127.0.0.1 or localhost. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* A body and the whole request that carries it (head and body in one buffer: written with one
 * write, as curl and OpenSSL's HTTP client send a small POST) */
struct body { char *data; size_t len; char *req; size_t req_len; };

static struct {
	int tls, port, genp, seconds;
	char host[64], path[512];
	const char *ctype, *expect;
	char extra[1024];          /* -H header lines, each ending in CRLF */
	struct body *bodies;
	int nbodies;
	SSL_CTX *ctx;
	double stop_at;
} cfg;

struct worker {
	pthread_t th;
	int idx, fd;
	SSL *ssl;
	double *lat;
	size_t nlat, cap;
	long errors;
	char buf[1 << 16];
};

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static int dcmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static void hangup(struct worker *w)
{
	if (w->ssl) { SSL_free(w->ssl); w->ssl = NULL; }
	if (w->fd >= 0) { close(w->fd); w->fd = -1; }
}

/* A new connection (and TLS handshake) for w: 0, or -1. */
static int dial(struct worker *w)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(cfg.port) };
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	int one = 1;
	w->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (w->fd < 0) return -1;
	setsockopt(w->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	if (connect(w->fd, (struct sockaddr *)&sa, sizeof sa) < 0) goto fail;
	if (cfg.tls) {
		w->ssl = SSL_new(cfg.ctx);
		SSL_set_fd(w->ssl, w->fd);
		SSL_set_tlsext_host_name(w->ssl, cfg.host);
		SSL_set1_host(w->ssl, cfg.host);
		if (SSL_connect(w->ssl) != 1) goto fail;
	}
	return 0;
fail:
	hangup(w);
	return -1;
}

static int xwrite(struct worker *w, const char *p, size_t n)
{
	while (n) {
		ssize_t r = w->ssl ? SSL_write(w->ssl, p, (int)n) : write(w->fd, p, n);
		if (r <= 0) return -1;
		p += r; n -= (size_t)r;
	}
	return 0;
}

static ssize_t xread(struct worker *w, char *p, size_t n)
{
	return w->ssl ? SSL_read(w->ssl, p, (int)n) : read(w->fd, p, n);
}

/* The value of header name in the head [h, he) or NULL; *vlen gets its length. */
static const char *header(const char *h, const char *he, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	for (const char *l = strstr(h, "\r\n"); l && l < he; l = strstr(l + 2, "\r\n")) {
		const char *s = l + 2;
		if ((size_t)(he - s) > nl + 1 && !strncasecmp(s, name, nl) && s[nl] == ':') {
			s += nl + 1;
			while (*s == ' ' || *s == '\t') s++;
			const char *e = strstr(s, "\r\n");
			*vlen = (size_t)((e ? e : he) - s);
			return s;
		}
	}
	return NULL;
}

/* Is b (n bytes) a DER PKIMessage whose body is a genp ([22] constructed, 0xb6)? */
static int is_genp(const unsigned char *b, size_t n)
{
	size_t i = 1, hl;
	if (n < 4 || b[0] != 0x30) return 0;
	i += (b[i] & 0x80) ? 1 + (b[i] & 0x7f) : 1;          /* outer length */
	if (i + 2 > n || b[i] != 0x30) return 0;
	size_t j = i + 1;
	if (b[j] & 0x80) {
		int k = b[j] & 0x7f; hl = 0;
		if (k > 4 || j + 1 + k > n) return 0;
		for (int q = 0; q < k; q++) hl = hl << 8 | b[j + 1 + q];
		j += 1 + k;
	} else {
		hl = b[j]; j += 1;
	}
	return j + hl < n && b[j + hl] == 0xb6;
}

/* One request with body b on w's connection (made if there is none). 1 for a good answer,
 * 0 for a bad one, -1 when the connection failed before any answer byte (retry). */
static int exchange(struct worker *w, const struct body *b, int *fresh)
{
	*fresh = w->fd < 0;
	if (*fresh && dial(w) < 0) return 0;
	if (xwrite(w, b->req, b->req_len) < 0) return -1;
	size_t got = 0;
	char *he = NULL;
	while (!he) {
		if (got >= sizeof w->buf - 1) return 0;
		ssize_t r = xread(w, w->buf + got, sizeof w->buf - 1 - got);
		if (r <= 0) return got ? 0 : -1;
		got += (size_t)r;
		w->buf[got] = 0;
		he = strstr(w->buf, "\r\n\r\n");
	}
	size_t vl, hlen = (size_t)(he - w->buf) + 4;
	int status = strncmp(w->buf, "HTTP/1.", 7) ? 0 : atoi(w->buf + 9);
	const char *v = header(w->buf, he + 2, "Content-Length", &vl);
	long need = v ? atol(v) : -1;
	int closing = (v = header(w->buf, he + 2, "Connection", &vl)) && vl == 5 && !strncasecmp(v, "close", 5);
	int type_ok = (v = header(w->buf, he + 2, "Content-Type", &vl)) && vl >= strlen(cfg.expect) &&
	              !strncasecmp(v, cfg.expect, strlen(cfg.expect));
	if (need > (long)(sizeof w->buf - 1 - hlen)) return 0;
	while (need < 0 ? got < sizeof w->buf - 1 : (long)(got - hlen) < need) {
		ssize_t r = xread(w, w->buf + got, sizeof w->buf - 1 - got);
		if (r <= 0) {
			if (need >= 0) return 0;
			closing = 1;
			break;
		}
		got += (size_t)r;
	}
	size_t blen = got - hlen;
	if (closing || need < 0) hangup(w);
	return status == 200 && type_ok && blen > 0 &&
	       (!cfg.genp || is_genp((const unsigned char *)w->buf + hlen, blen));
}

static void *run(void *arg)
{
	struct worker *w = arg;
	int i = w->idx, fresh;
	while (now() < cfg.stop_at) {
		const struct body *b = &cfg.bodies[i++ % cfg.nbodies];
		double t0 = now();
		int r = exchange(w, b, &fresh);
		if (r < 0) {
			hangup(w);
			if (!fresh) r = exchange(w, b, &fresh);   /* a kept-alive connection the server closed */
		}
		if (r == 1) {
			if (w->nlat == w->cap) {
				w->cap = w->cap ? 2 * w->cap : 4096;
				w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
				if (!w->lat) abort();
			}
			w->lat[w->nlat++] = now() - t0;
		} else {
			w->errors++;
			hangup(w);
		}
	}
	hangup(w);
	return NULL;
}

static int read_file(const char *name, struct body *b)
{
	FILE *f = fopen(name, "rb");
	if (!f) return -1;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	rewind(f);
	b->data = malloc(n > 0 ? (size_t)n : 1);
	b->len = n > 0 ? fread(b->data, 1, (size_t)n, f) : 0;
	fclose(f);
	return b->len == (size_t)n ? 0 : -1;
}

/* b's request (head from cfg, then the body): 0, or -1 */
static int build_request(struct body *b)
{
	char head[2048];
	int hn = snprintf(head, sizeof head, "POST %s HTTP/1.1\r\nHost: %s:%d\r\n%sContent-Type: %s\r\n"
	                  "Content-Length: %zu\r\n\r\n", cfg.path, cfg.host, cfg.port, cfg.extra, cfg.ctype, b->len);
	if (hn < 0 || (size_t)hn >= sizeof head || !(b->req = malloc((size_t)hn + b->len))) return -1;
	memcpy(b->req, head, (size_t)hn);
	memcpy(b->req + hn, b->data, b->len);
	b->req_len = (size_t)hn + b->len;
	return 0;
}

static int pass_cb(char *buf, int size, int rw, void *u)
{
	(void)rw;
	int n = (int)strlen(u);
	if (n >= size) return 0;
	memcpy(buf, u, (size_t)n);
	return n;
}

static void usage(void)
{
	fprintf(stderr, "usage: post_load -u URL -t TYPE -e EXPECT -m PREFIX -r NAME:UNIT [-c N] [-s S] [-g]"
	        " [-A CA -C CERT -K KEY -P PASS] [-H HEADER]... BODY...\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *url = NULL, *prefix = NULL, *rate = NULL, *ca = NULL, *cert = NULL, *key = NULL, *pass = "";
	int threads = 2, o;
	cfg.seconds = 10;
	while ((o = getopt(argc, argv, "u:t:e:m:r:c:s:gA:C:K:P:H:")) != -1)
		switch (o) {
		case 'u': url = optarg; break;
		case 't': cfg.ctype = optarg; break;
		case 'e': cfg.expect = optarg; break;
		case 'm': prefix = optarg; break;
		case 'r': rate = optarg; break;
		case 'c': threads = atoi(optarg); break;
		case 's': cfg.seconds = atoi(optarg); break;
		case 'g': cfg.genp = 1; break;
		case 'A': ca = optarg; break;
		case 'C': cert = optarg; break;
		case 'K': key = optarg; break;
		case 'P': pass = optarg; break;
		case 'H': {
			size_t l = strlen(cfg.extra);
			if (strpbrk(optarg, "\r\n") || snprintf(cfg.extra + l, sizeof cfg.extra - l, "%s\r\n", optarg) >=
			    (int)(sizeof cfg.extra - l))
				usage();
			break;
		}
		default: usage();
		}
	if (!url || !cfg.ctype || !cfg.expect || !prefix || !rate || !strchr(rate, ':') || optind >= argc ||
	    threads < 1 || cfg.seconds < 1)
		usage();
	const char *hp;
	if (!strncmp(url, "https://", 8)) { cfg.tls = 1; hp = url + 8; }
	else if (!strncmp(url, "http://", 7)) hp = url + 7;
	else usage();
	const char *colon = strchr(hp, ':'), *slash = strchr(hp, '/');
	if (!colon || (slash && slash < colon) || (size_t)(colon - hp) >= sizeof cfg.host) usage();
	memcpy(cfg.host, hp, (size_t)(colon - hp));
	cfg.port = atoi(colon + 1);
	snprintf(cfg.path, sizeof cfg.path, "%s", slash ? slash : "/");
	if (strcmp(cfg.host, "127.0.0.1") && strcmp(cfg.host, "localhost")) {
		fprintf(stderr, "post_load: loopback only\n");
		return 2;
	}
	cfg.nbodies = argc - optind;
	cfg.bodies = calloc((size_t)cfg.nbodies, sizeof *cfg.bodies);
	for (int i = 0; i < cfg.nbodies; i++)
		if (read_file(argv[optind + i], &cfg.bodies[i]) < 0 || build_request(&cfg.bodies[i]) < 0) {
			perror(argv[optind + i]);
			return 1;
		}
	if (cfg.tls) {
		cfg.ctx = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(cfg.ctx, SSL_VERIFY_PEER, NULL);
		if (!ca || SSL_CTX_load_verify_locations(cfg.ctx, ca, NULL) != 1) { fprintf(stderr, "post_load: -A CA\n"); return 1; }
		if (cert) {
			SSL_CTX_set_default_passwd_cb(cfg.ctx, pass_cb);
			SSL_CTX_set_default_passwd_cb_userdata(cfg.ctx, (void *)pass);
			if (SSL_CTX_use_certificate_chain_file(cfg.ctx, cert) != 1 ||
			    SSL_CTX_use_PrivateKey_file(cfg.ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1) {
				ERR_print_errors_fp(stderr);
				return 1;
			}
		}
	}
	signal(SIGPIPE, SIG_IGN);   /* a server that closes a kept-alive connection: EPIPE, retried */
	struct worker *ws = calloc((size_t)threads, sizeof *ws);
	double t0 = now();
	cfg.stop_at = t0 + cfg.seconds;
	for (int i = 0; i < threads; i++) {
		ws[i].idx = i; ws[i].fd = -1;
		pthread_create(&ws[i].th, NULL, run, &ws[i]);
	}
	size_t n = 0;
	long errors = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(ws[i].th, NULL);
		n += ws[i].nlat;
		errors += ws[i].errors;
	}
	double wall = now() - t0;
	double *all = malloc((n ? n : 1) * sizeof *all);
	size_t k = 0;
	for (int i = 0; i < threads; i++) {
		memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof *all);
		k += ws[i].nlat;
	}
	qsort(all, n, sizeof *all, dcmp);
#define PCT(q) (n ? all[(size_t)fmin((double)n - 1, floor((q) * (double)n))] * 1e3 : 0.0)
	const char *unit = strchr(rate, ':');
	printf("%s.%.*s %.1f %s\n", prefix, (int)(unit - rate), rate, (double)n / wall, unit + 1);
	printf("%s.p50 %.2f ms\n%s.p99 %.2f ms\n%s.errors %ld count\n", prefix, PCT(0.5), prefix, PCT(0.99),
	       prefix, errors);
	/* the generator's own CPU (set-up included) per operation: on two cores what it takes is
	 * missing from whoever shares its core */
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
		     ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
	printf("%s.load_cpu_per_op %.0f us\n", prefix, n ? cpu / (double)n * 1e6 : 0.0);
	return 0;
}
