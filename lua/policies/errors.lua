-- policies.errors: how internal reasons are worded and which status they get.
--
-- One place for the operator to change wording. Protocol modules (EST, SCEP, CMP) map the same
-- reason codes into their own error forms; the forward proxy uses status + text.
local M = {}

M.map = {
  not_allowed      = { status = 403, text = "destination is not in the allowlist" },
  port_not_allowed = { status = 403, text = "port is not allowed for this destination" },
  internal_address = { status = 403, text = "destination resolves to an internal address" },
  sni_mismatch     = { status = 403, text = "TLS server name does not match the CONNECT target" },
  policy_error     = { status = 403, text = "request denied: policy error" },
  bad_request      = { status = 400, text = "malformed request" },
  upstream_down    = { status = 502, text = "upstream unreachable" },
  upstream_timeout = { status = 504, text = "upstream did not answer in time" },
}

--- status, text for a reason code; unknown codes fail closed as a policy error.
function M.lookup(code)
  local e = M.map[code] or M.map.policy_error
  return e.status, e.text
end

--- A deny verdict for a reason code, with an optional detail appended to the text.
function M.deny(code, detail)
  local status, text = M.lookup(code)
  if detail then text = text .. ": " .. detail end
  return deny(status, text)
end

return M
