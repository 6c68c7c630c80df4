-- protocols.scep: SCEP (RFC 8894). No handler in this version: SCEP clients reach their CA through
-- the forward proxy (HTTP_PROXY), which the policy's allowlist decides on. A route to it answers 501.
return {
  api_version = 1,
  name = "scep",
  hooks = {},
}
