-- enrollgate settings for bench/run.sh (`enrollgate run -c bench/conf --listen ... --admin ...`).
-- As shipped in conf/enrollgate.lua except: loopback bench listeners (the command line repeats them),
-- log level warn and no access log (the peers it is compared with log nothing per request either).
return {
  listen = { "127.0.0.1:28888" },     -- bench/run.sh passes --listen 127.0.0.1:28888
  admin  = "127.0.0.1:28898",         -- bench/run.sh passes --admin 127.0.0.1:28898
  log = {
    level = "warn",
    access = false,
  },
  limits = {
    max_header_bytes    = 16384,
    header_timeout      = 10,
    idle_timeout        = 60,
    tunnel_idle_timeout = 600,
    max_connections     = 4096,       -- wrk opens 64; the default is ample
    dns_timeout         = 5,
    connect_timeout     = 10,
    response_timeout    = 60,
    drain_timeout       = 2,          -- bench/run.sh stops it with SIGTERM at the end
  },
  lua = {
    hook_instructions = 1000000,
    hook_time_ms      = 100,
    memory_mb         = 32,
  },
}
