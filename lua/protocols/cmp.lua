-- protocols.cmp: CMP over HTTP (RFC 9480, RFC 6712). Served by enrollgate's CMP listener,
-- configured in cmp.lua (docs/cmp.md). A route to it on the proxy port answers 421 and names
-- that listener.
return {
  api_version = 1,
  name = "cmp",
  served_by = "the CMP listener (cmp.lua)",
  hooks = { "on_message" },
}
