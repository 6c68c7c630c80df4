-- protocols.acme: ACME (RFC 8555). No handler in this version: ACME clients reach their CA through
-- the forward proxy (HTTPS_PROXY, CONNECT), which the policy's allowlist decides on. A route to it
-- answers 501.
return {
  api_version = 1,
  name = "acme",
  hooks = {},
}
