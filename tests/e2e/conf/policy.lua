-- Test policy: local origins on 127.0.0.1 are named explicitly (loopback is refused otherwise).
return {
  api_version = 1,
  allowlist = {
    { name = "local-origin", hosts = { "localhost", "origin.test", "*.test" }, cidrs = { "127.0.0.0/8", "::1/128" },
      ports = { "1024-65535" } },
    { name = "example-tls", hosts = { "*.example.com" }, ports = { 443 } },
  },
  tunnel = { require_sni_match = true },
  on_request = function(ctx)
    if ctx.path:find("^/forbidden") then return deny(403, "path forbidden by test hook") end
  end,
  selftest = {
    { method = "GET", host = "localhost", port = 8080, expect = "allow" },
    { method = "CONNECT", host = "localhost", port = 22, expect = "deny" },
    { method = "GET", host = "localhost", port = 8080, path = "/forbidden", expect = "deny" },
  },
}
