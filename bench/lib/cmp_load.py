#!/usr/bin/python3
"""cmp_load.py -- (bench/cmp.sh runs it) CMP transactions against one endpoint.

usage: cmp_load.py --url http://127.0.0.1:PORT/path --msg FILE.der --name NAME [--threads 2] [--seconds 10]

Each thread keeps one HTTP/1.1 connection (a new one whenever the server closes it) and POSTs the
DER PKIMessage of FILE (a MAC-protected genm: a transaction of one round trip that the mock CA
answers again and again) for the given time. An answer counts when it is HTTP 200 with
Content-Type application/pkixcmp and a genp body ([22], byte 0xb6 after the header). Prints
"metric value unit" lines: cmp.NAME.tps, cmp.NAME.p50, cmp.NAME.p99 (ms), cmp.NAME.errors.
"""
import argparse
import http.client
import threading
import time
import urllib.parse


def is_genp(data):
    # PKIMessage SEQUENCE { header SEQUENCE, body [22] ... }: skip the outer and the header TLV
    def skip_len(b, i):
        n = b[i]
        if n < 0x80:
            return i + 1, n
        k = n & 0x7f
        return i + 1 + k, int.from_bytes(b[i + 1:i + 1 + k], "big")
    try:
        i, _ = skip_len(data, 1)            # outer SEQUENCE
        j, hl = skip_len(data, i + 1)       # header SEQUENCE
        return data[j + hl] == 0xb6
    except IndexError:
        return False


def post(u, conn, body):
    """One POST on conn (or a new connection); a kept-alive connection the server has closed
    meanwhile (the openssl mock says keep-alive and closes) is replaced once, as curl does."""
    for attempt in (0, 1):
        fresh = conn is None
        if fresh:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        try:
            conn.request("POST", u.path or "/", body=body, headers={"Content-Type": "application/pkixcmp"})
            r = conn.getresponse()
            return conn, r, r.read()
        except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
            conn.close()
            conn = None
            if fresh or attempt:
                raise
    raise OSError("unreachable")


def worker(u, body, stop_at, out):
    lat, errors, conn = [], 0, None
    while time.time() < stop_at:
        try:
            t0 = time.perf_counter()
            conn, r, data = post(u, conn, body)
            dt = time.perf_counter() - t0
            if r.status == 200 and r.getheader("Content-Type", "").startswith("application/pkixcmp") and is_genp(data):
                lat.append(dt)
            else:
                errors += 1
            if r.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            errors += 1
            if conn:
                conn.close()
            conn = None
    out.append((lat, errors))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--msg", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10)
    a = ap.parse_args()
    body = open(a.msg, "rb").read()
    u = urllib.parse.urlparse(a.url)
    out, threads = [], []
    t_start = time.time()
    stop_at = t_start + a.seconds
    for _ in range(a.threads):
        t = threading.Thread(target=worker, args=(u, body, stop_at, out))
        t.start()
        threads.append(t)
    for t in threads:
        t.join()
    elapsed = time.time() - t_start
    lat = sorted(x for l, _ in out for x in l)
    errors = sum(e for _, e in out)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1e3 if lat else 0.0
    print(f"cmp.{a.name}.tps {len(lat) / elapsed:.1f} tx/s")
    print(f"cmp.{a.name}.p50 {pct(0.50):.2f} ms")
    print(f"cmp.{a.name}.p99 {pct(0.99):.2f} ms")
    print(f"cmp.{a.name}.errors {errors} count")


if __name__ == "__main__":
    main()
