#!/usr/bin/env python3
"""report.py OUTDIR TARGET... — (bench/run.sh runs it) the headline figures of one bench run.

Reads OUTDIR/<target>.txt ("metric value unit" lines from lib/measure.sh and run.sh) and prints
  <target>.<metric> value unit                   the headline metrics of every target
  ratio.enrollgate_vs_<peer>.<metric> value x    enrollgate's value divided by the peer's value
then writes OUTDIR/table.md: targets as columns, metrics as rows, ratio rows, and the goals of the
performance issue (keep-alive >= 1.2x HAProxy, close >= 1.1x HAProxy, CPU/request <= 20 us,
CONNECT >= 0.97x direct, plain large body >= 0.75x direct)."""
import os
import sys

OUT, TARGETS = sys.argv[1], sys.argv[2:]
# (metric, label for table.md, format)
KEY = [
    ("http_keepalive_rps", "keep-alive small GET, req/s", "{:.0f}"),
    ("http_keepalive_p50", "keep-alive p50, ms", "{:.2f}"),
    ("http_keepalive_p99", "keep-alive p99, ms", "{:.2f}"),
    ("http_keepalive_proxy_cpu_per_req", "proxy CPU per keep-alive request, µs", "{:.1f}"),
    ("http_close_rps", "Connection: close, req/s", "{:.0f}"),
    ("http_close_proxy_cpu_per_req", "proxy CPU per close request, µs", "{:.1f}"),
    ("https_tunnel_tput_median", "HTTPS 100 MiB via CONNECT, MB/s (median)", "{:.0f}"),
    ("https_tunnel_proxy_cpu", "proxy CPU, HTTPS tunnel, s/GB", "{:.2f}"),
    ("http_big_tput_median", "plain HTTP 100 MiB via proxy, MB/s (median)", "{:.0f}"),
    ("http_big_proxy_cpu", "proxy CPU, plain HTTP body, s/GB", "{:.2f}"),
    ("connect_setup_total_p50", "CONNECT+TLS+GET p50, ms", "{:.3f}"),
    ("connect_setup_total_p99", "CONNECT+TLS+GET p99, ms", "{:.3f}"),
    ("connect_setup_tunnel_p50", "CONNECT reply p50, ms", "{:.3f}"),
    ("connect_setup_proxy_cpu_per_conn", "proxy CPU per CONNECT+TLS conn, µs", "{:.0f}"),
    ("rss_fresh", "RSS just started, KiB", "{:.0f}"),
    ("rss_idle", "RSS idle (after warm-up), KiB", "{:.0f}"),
    ("rss_load_mid", "RSS under keep-alive load, KiB", "{:.0f}"),
    ("rss_load_peak", "RSS peak under keep-alive load, KiB", "{:.0f}"),
    ("errors", "errors (wrk, size, CONNECT fails)", "{:.0f}"),
    ("foreign_cpu_max", "foreign CPU, max over tests, %core", "{:.0f}"),
    ("steal_cpu_max", "steal CPU, max over tests, %core", "{:.0f}"),
    ("tries", "tries", "{:.0f}"),
]
VS_DIRECT = ["http_keepalive_rps", "http_close_rps", "https_tunnel_tput_median", "http_big_tput_median",
             "connect_setup_total_p50", "connect_setup_total_p99"]
VS_PROXY = VS_DIRECT + ["http_keepalive_proxy_cpu_per_req", "http_close_proxy_cpu_per_req",
                        "connect_setup_proxy_cpu_per_conn", "rss_idle", "rss_load_peak"]
ERRORS = ("http_keepalive_errors", "http_keepalive_non2xx", "http_close_errors", "http_close_non2xx",
          "https_tunnel_bad_size", "http_big_bad_size", "connect_setup_fail",
          "http_keepalive_failed", "http_close_failed")

vals, units = {}, {}
for t in TARGETS:
    path = os.path.join(OUT, t + ".txt")
    if not os.path.exists(path):
        continue
    d = vals.setdefault(t, {})
    for line in open(path):
        f = line.split()
        if len(f) < 3:
            continue
        try:
            d[f[0]] = float(f[1])
        except ValueError:
            continue
        units[f[0]] = f[2]
    d["errors"] = sum(d.get(m, 0) for m in ERRORS)
    d["foreign_cpu_max"] = max([v for m, v in d.items() if m.endswith("_cpu_foreign")] or [0])
    d["steal_cpu_max"] = max([v for m, v in d.items() if m.endswith("_cpu_steal")] or [0])
units.update(errors="count", foreign_cpu_max="%core", steal_cpu_max="%core", tries="count")

def fmt(v):
    return f"{v:.6g}" if abs(v) < 1e6 else f"{v:.0f}"

for t in vals:
    for m, _, _ in KEY:
        if m in vals[t]:
            print(f"{t}.{m} {fmt(vals[t][m])} {units.get(m, '')}")

ratios = {}
eg = vals.get("enrollgate", {})
for peer in vals:
    if peer == "enrollgate" or not eg:
        continue
    for m in (VS_DIRECT if peer == "direct" else VS_PROXY):
        a, b = eg.get(m), vals[peer].get(m)
        if a is not None and b:
            ratios[(peer, m)] = a / b
            print(f"ratio.enrollgate_vs_{peer}.{m} {a / b:.3f} x")

with open(os.path.join(OUT, "table.md"), "w") as md:
    cols = list(vals)
    md.write("| metric | " + " | ".join(cols) + " |\n|---" + "|---:" * len(cols) + "|\n")
    for m, label, f in KEY:
        if any(m in vals[t] for t in cols):
            md.write(f"| {label} | " + " | ".join(f.format(vals[t][m]) if m in vals[t] else "—" for t in cols) + " |\n")
    peers = [p for p in cols if p != "enrollgate"]
    if eg and peers:
        md.write("\nRatios: enrollgate ÷ peer (throughput: > 1 is better; CPU, latency, RSS: < 1 is better).\n\n")
        md.write("| ratio | " + " | ".join("vs " + p for p in peers) + " |\n|---" + "|---:" * len(peers) + "|\n")
        for m, label, _ in KEY:
            if any((p, m) in ratios for p in peers):
                md.write(f"| {label} | " + " | ".join(f"{ratios[(p, m)]:.2f}" if (p, m) in ratios else "—"
                                                      for p in peers) + " |\n")
    goals = [("keep-alive req/s ≥ 1.2× HAProxy", ratios.get(("haproxy", "http_keepalive_rps")), 1.2, "x"),
             ("close req/s ≥ 1.1× HAProxy", ratios.get(("haproxy", "http_close_rps")), 1.1, "x"),
             ("proxy CPU per keep-alive request ≤ 20 µs", -eg["http_keepalive_proxy_cpu_per_req"]
              if "http_keepalive_proxy_cpu_per_req" in eg else None, -20, "µs"),
             ("HTTPS via CONNECT ≥ 0.97× direct", ratios.get(("direct", "https_tunnel_tput_median")), 0.97, "x"),
             ("plain HTTP large body ≥ 0.75× direct", ratios.get(("direct", "http_big_tput_median")), 0.75, "x")]
    if eg:
        md.write("\n| goal (performance issue) | measured | met |\n|---|---:|---|\n")
        for label, v, lim, u in goals:
            if v is None:
                md.write(f"| {label} | — | not measured |\n")
            else:
                md.write(f"| {label} | {abs(v):.2f} {u} | {'yes' if v >= lim else 'no'} |\n")
