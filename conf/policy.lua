-- enrollgate policy: who may be reached through the forward proxy.
-- Edit, run `enrollgate check`, then reload (kill -HUP, `enrollgate reload` or POST /reload).
-- API: docs/policy-api.md.
return {
  api_version = 1,

  -- Destination allowlist, compiled into a C matcher at load. Every rule needs ports (an empty
  -- list is an error, never "all ports"). hosts: exact names or "*.domain" (subdomains only).
  -- cidrs: IP destinations; a name that resolves to a loopback/private/link-local/metadata
  -- address is refused unless the matching rule's cidrs name that address.
  allowlist = {
    { name = "letsencrypt", hosts = { "acme-v02.api.letsencrypt.org", "acme-staging-v02.api.letsencrypt.org" }, ports = { 443 } },
    { name = "digicert",    hosts = { "*.digicert.com" }, ports = { 443 } },
    { name = "ocsp-crl",    hosts = { "*.lencr.org", "crl3.digicert.com", "crl4.digicert.com" }, ports = { 80 } },
  },

  -- CONNECT tunnels: refuse a TLS ClientHello whose SNI names another host than the CONNECT target.
  tunnel = { require_sni_match = true },

  -- Optional hooks: return allow(), deny(status, reason) or nil (= the allowlist decides).
  -- A hook can only narrow the allowlist, never widen it.
  -- on_request = function(ctx) end,
  -- on_connect = function(ctx) end,

  -- Self-test vectors: run at every load; a failing vector keeps the previous policy live.
  selftest = {
    { method = "CONNECT", host = "acme-v02.api.letsencrypt.org", port = 443, expect = "allow" },
    { method = "CONNECT", host = "acme-v02.api.letsencrypt.org", port = 22,  expect = "deny" },
    { method = "CONNECT", host = "evil.example",                 port = 443, expect = "deny" },
    { method = "GET",     host = "x1.c.lencr.org",               port = 80,  expect = "allow" },
  },
}
