-- enrollgate policy for bench/run.sh: only the nginx origin on loopback (127.0.0.1:28080 HTTP,
-- 127.0.0.1:28443 HTTPS via CONNECT), through the compiled allowlist, plus an on_request and an
-- on_connect hook so that every request and every tunnel also runs Lua, as a production policy does.
return {
  api_version = 1,
  allowlist = {
    -- an IP literal in hosts is a host route; loopback must be named in cidrs or it is refused
    { name = "bench-origin", hosts = { "127.0.0.1" }, cidrs = { "127.0.0.1/32" }, ports = { 28080, 28443 } },
  },
  tunnel = { require_sni_match = true },
  on_request = function(ctx)
    if ctx.path:find("^/forbidden") then return deny(403, "path forbidden by the bench policy") end
  end,
  on_connect = function(ctx)
    if ctx.port ~= 28443 then return deny(403, "tunnels only to the origin's TLS port") end
  end,
  selftest = {
    { method = "GET", host = "127.0.0.1", port = 28080, path = "/small", address = "127.0.0.1", expect = "allow" },
    { method = "GET", host = "127.0.0.1", port = 28080, path = "/forbidden/x", expect = "deny" },
    { method = "CONNECT", host = "127.0.0.1", port = 28443, address = "127.0.0.1", expect = "allow" },
    { method = "CONNECT", host = "127.0.0.1", port = 22, expect = "deny" },
    { method = "GET", host = "evil.example", port = 80, expect = "deny" },
  },
}
