-- policies.errors: how internal reasons are worded and which status they get.
--
-- One place for the operator to change wording. Protocol modules (EST, SCEP, CMP) map the same
-- reason codes into their own error forms; the forward proxy uses status + text. The EST codes
-- are read when the policy loads (a copy of this file in the configuration directory as
-- policies/errors.lua takes precedence over the bundled one).
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
  -- EST (RFC 7030): what devices get when the CA side fails. 503 goes out with Retry-After.
  est_upstream_down        = { status = 503, text = "no upstream CA answered" },
  est_upstream_bad_answer  = { status = 502, text = "upstream CA answered with something that is not a PKCS#7" },
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
