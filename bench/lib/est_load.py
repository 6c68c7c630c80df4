#!/usr/bin/python3
"""est_load.py -- (bench/est.sh runs it) EST simpleenroll load against one endpoint.

usage: est_load.py --url https://localhost:PORT/.well-known/est --cacert CA --cert C --key K --password PW
                   --csrs DIR --name NAME [--threads 4] [--seconds 10]

Each thread keeps one TLS connection (client certificate) and posts the base64 CSRs of DIR
(*.b64, a fixed mix) round robin for the given time. Prints "metric value unit" lines:
  est.NAME.enroll_rps, est.NAME.p50, est.NAME.p99 (ms), est.NAME.errors (count).
"""
import argparse
import glob
import http.client
import os
import ssl
import sys
import threading
import time


def worker(args, ctx, host, port, path, csrs, stop_at, out, idx):
    lat, errors = [], 0
    conn = None
    i = idx
    while time.time() < stop_at:
        body = csrs[i % len(csrs)]
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=30)
            t0 = time.perf_counter()
            conn.request("POST", path + "/simpleenroll", body=body, headers={"Content-Type": "application/pkcs10"})
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            if r.status == 200 and data:
                lat.append(dt)
            else:
                errors += 1
            if r.getheader("Connection", "").lower() == "close":
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException):
            errors += 1
            conn = None
    out[idx] = (lat, errors)


def main():
    ap = argparse.ArgumentParser()
    for a in ("url", "cacert", "cert", "key", "password", "csrs", "name"):
        ap.add_argument("--" + a, required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    rest = args.url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    if host not in ("localhost", "127.0.0.1"):
        sys.exit("est_load.py: loopback only")
    ctx = ssl.create_default_context(cafile=args.cacert)
    ctx.load_cert_chain(args.cert, args.key, args.password)
    csrs = [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(args.csrs, "*.b64")))]
    out = [None] * args.threads
    stop_at = time.time() + args.seconds
    t0 = time.time()
    ts = [threading.Thread(target=worker, args=(args, ctx, host, int(port or 443), "/" + path, csrs, stop_at, out, i))
          for i in range(args.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.time() - t0
    lat = sorted(x for r in out for x in r[0])
    errors = sum(r[1] for r in out)
    n = len(lat)
    pct = lambda q: lat[min(n - 1, int(q * n))] * 1e3 if n else 0
    print("est.%s.enroll_rps %.1f enroll/s" % (args.name, n / wall))
    print("est.%s.p50 %.2f ms" % (args.name, pct(0.5)))
    print("est.%s.p99 %.2f ms" % (args.name, pct(0.99)))
    print("est.%s.errors %d count" % (args.name, errors))


if __name__ == "__main__":
    main()
