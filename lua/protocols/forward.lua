-- protocols.forward: the HTTP/1.1 forward proxy (absolute-form requests and CONNECT tunnels).
-- The data path is in C (core/proxy.c, core/tunnel.c); this module declares it to the registry
-- and documents the hooks a policy may define for it (docs/policy-api.md).
return {
  api_version = 1,
  name = "forward",
  hooks = { "on_request", "on_connect", "on_client_hello" },
}
