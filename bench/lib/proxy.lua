-- proxy.lua — (wrk script used by bench/lib/measure.sh) small GETs through an HTTP forward proxy.
-- wrk connects to the URL on its command line (the proxy) and sends TARGET as the request-target:
--   wrk -s proxy.lua http://PROXY_HOST:PORT -- http://127.0.0.1:28080/small [close]   (absolute-form, via proxy)
--   wrk -s proxy.lua http://127.0.0.1:28080  -- /small [close]                         (origin-form, direct)
-- "close" adds "Connection: close" (one request per connection: measures the new-connection rate).
-- done() prints one parseable line: WRK rps R p50_ms P p99_ms P requests N errors E non2xx3xx S
function init(args)
   local target = args[1] or "/small"
   wrk.path = target
   local hostport = target:match("^%a+://([^/]+)")
   if hostport then wrk.headers["Host"] = hostport end
   if args[2] == "close" then wrk.headers["Connection"] = "close" end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format("WRK rps %.1f p50_ms %.3f p99_ms %.3f requests %d errors %d non2xx3xx %d\n",
      summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
      latency:percentile(99) / 1000, summary.requests,
      e.connect + e.read + e.write + e.timeout, e.status))
end
