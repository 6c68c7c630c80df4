-- protocols.est: EST (RFC 7030). Served by enrollgate's own HTTPS listener, configured in est.lua
-- (docs/est.md): EST needs TLS with client certificates, which the plain proxy port does not
-- terminate. A route to it on the proxy port answers 421 and names that listener.
return {
  api_version = 1,
  name = "est",
  served_by = "the EST listener (est.lua, HTTPS)",
  hooks = { "on_enroll" },
}
