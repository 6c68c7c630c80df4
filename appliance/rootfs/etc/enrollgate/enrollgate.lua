-- enrollgate settings on the appliance. Listeners are bound at start-up (change them, then
-- `sv restart enrollgate`); everything else is re-read on every reload (`enrollgate reload`).
-- Reference: docs/policy-api.md. The policy itself is /etc/enrollgate/policy.lua.
return {
  listen = { "0.0.0.0:48999", "[::]:48999" },  -- the proxy, on every address of the appliance
  admin  = "127.0.0.1:48998",         -- /healthz /metrics /status, POST /reload: loopback only
  workers = 1,                        -- forward-proxy processes, or "auto" (one per CPU): `sv restart` to change
  log = {
    level = "info",                   -- debug | info | warn | error
    access = true,                    -- one JSON line per request / tunnel
  },
  limits = {
    max_header_bytes    = 16384,      -- request head larger than this: 431
    header_timeout      = 10,         -- seconds to receive a complete request head: 408
    idle_timeout        = 60,         -- seconds a keep-alive client connection may sit idle
    tunnel_idle_timeout = 600,        -- seconds a CONNECT tunnel may carry no byte either way
    max_connections     = 4096,       -- client connections; more are refused at accept
    dns_timeout         = 5,          -- seconds for name resolution: 504
    connect_timeout     = 10,         -- seconds to connect upstream: 504
    response_timeout    = 60,         -- seconds to wait for the upstream response head: 504
    drain_timeout       = 10,         -- seconds SIGTERM waits for requests in flight
  },
  dns = {
    resolv_conf = "/etc/resolv.conf", -- a link to /run/resolv.conf (DHCP); read again at every reload
  },
  relay = {
    splice = true,                    -- running CONNECT tunnels move bytes with splice(2), kernel to kernel
  },
  lua = {
    hook_instructions = 1000000,      -- VM instructions per hook call, then the request is denied
    hook_time_ms      = 100,          -- wall-clock budget per hook call
    memory_mb         = 32,           -- cap on one policy state's memory
  },
}
