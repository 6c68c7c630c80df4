-- Test configuration: listeners come from --listen/--admin on the command line.
return {
  listen = { "127.0.0.1:48999" },
  admin  = "127.0.0.1:48998",
  log = { level = "debug", access = true },
  limits = {
    max_header_bytes = 8192, header_timeout = 2, idle_timeout = 30, tunnel_idle_timeout = 60,
    max_connections = 1024, dns_timeout = 3, connect_timeout = 3, response_timeout = 10, drain_timeout = 3,
  },
  lua = { hook_instructions = 100000, hook_time_ms = 200, memory_mb = 16 },
}
