/* connect_lat.c — (bench/run.sh compiles it into the state dir) N sequential new connections: [HTTP CONNECT via proxy +] TLS handshake + GET PATH.
 * Prints per-request latency percentiles (ms): total, and the tunnel part (TCP connect + CONNECT 200).
 * build: cc -O2 -o connect_lat connect_lat.c -lssl -lcrypto
 * usage: connect_lat [-x PROXY_HOST:PORT] [-n N] [-p PATH] TARGET_HOST:PORT   (IPv4 literals only) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double pct(const double *v, int n, double p) { int i = (int)ceil(p / 100.0 * n) - 1; return v[i < 0 ? 0 : i]; }

static int dial(const char *hp) {
    char host[64]; const char *c = strrchr(hp, ':');
    if (!c || c - hp >= (long)sizeof host) return -1;
    memcpy(host, hp, c - hp); host[c - hp] = 0;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(atoi(c + 1)) };
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { close(fd); return -1; }
    return fd;
}

static void report(const char *name, double *v, int n) {
    double sum = 0; for (int i = 0; i < n; i++) sum += v[i];
    qsort(v, n, sizeof *v, cmp);
    printf("%s_p50 %.3f ms\n%s_p90 %.3f ms\n%s_p99 %.3f ms\n%s_mean %.3f ms\n",
           name, pct(v, n, 50), name, pct(v, n, 90), name, pct(v, n, 99), name, sum / n);
}

int main(int argc, char **argv) {
    const char *proxy = NULL, *path = "/small"; int n = 1000, o;
    while ((o = getopt(argc, argv, "x:n:p:")) != -1)
        switch (o) { case 'x': proxy = optarg; break; case 'n': n = atoi(optarg); break; case 'p': path = optarg; break;
                     default: return 2; }
    if (optind >= argc || n < 1) { fprintf(stderr, "usage: %s [-x proxy] [-n N] [-p path] host:port\n", argv[0]); return 2; }
    const char *target = argv[optind];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);   /* full handshake every time */
    double *tot = calloc(n, sizeof *tot), *tun = calloc(n, sizeof *tun);
    int ok = 0, fail = 0; char buf[16384], sink[65536], req[512];
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        int fd = dial(proxy ? proxy : target), len, got = 0;
        if (fd < 0) { fail++; continue; }
        if (proxy) {                                  /* CONNECT, read the proxy's reply header */
            len = snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
            if (write(fd, req, len) != len) goto bad;
            for (;;) {
                int r = read(fd, buf + got, sizeof buf - 1 - got);
                if (r <= 0) goto bad;
                got += r; buf[got] = 0;
                if (strstr(buf, "\r\n\r\n")) break;
            }
            if (strncmp(buf, "HTTP/1.", 7) || strncmp(buf + 9, "200", 3)) goto bad;
        }
        double t1 = now_ms();
        SSL *s = SSL_new(ctx); SSL_set_fd(s, fd);
        if (SSL_connect(s) != 1) { SSL_free(s); goto bad; }
        len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, target);
        if (SSL_write(s, req, len) != len) { SSL_free(s); goto bad; }
        long total = 0, need = -1; got = 0;        /* read header, then count Content-Length body bytes */
        for (;;) {
            int r = need < 0 ? SSL_read(s, buf + got, sizeof buf - 1 - got) : SSL_read(s, sink, sizeof sink);
            if (r <= 0) break;
            total += r;
            if (need < 0) {
                got += r; buf[got] = 0;
                char *he = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "\r\nContent-Length:");
                if (he) need = (he - buf) + 4 + (cl ? atol(cl + 17) : 0);
                else if (got >= (int)sizeof buf - 1) break;
            }
            if (need >= 0 && total >= need) break;
        }
        int good = need >= 0 && total >= need && !strncmp(buf, "HTTP/1.1 200", 12);
        SSL_shutdown(s); SSL_free(s); close(fd);
        if (!good) { fail++; continue; }
        double t2 = now_ms();
        tot[ok] = t2 - t0; tun[ok] = t1 - t0; ok++;
        continue;
    bad:
        close(fd); fail++;
    }
    printf("ok %d count\nfail %d count\n", ok, fail);
    if (ok) { report("total", tot, ok); if (proxy) report("tunnel", tun, ok); }
    return fail ? 1 : 0;
}
