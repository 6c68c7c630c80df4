-- policies.errors: how internal reasons are worded and which status they get.
--
-- One place for the operator to change wording. Protocol modules (EST, SCEP, CMP) map the same
-- reason codes into their own error forms; the forward proxy uses status + text. The EST and CMP
-- codes are read when the policy loads (a copy of this file in the configuration directory as
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
  est_upstream_timeout     = { status = 503, text = "the CA took the request and did not answer in time; retry later" },
  est_upstream_bad_answer  = { status = 502, text = "upstream CA answered with something that is not a PKCS#7" },
  -- CMP (RFC 4210/9480): what a refused message is answered with, as the CA would (an error
  -- message with PKIStatus rejection, this failInfo and this text). Read when the policy loads.
  cmp_bad_message            = { failinfo = "badRequest",    text = "not a valid PKIMessage" },
  cmp_unprotected            = { failinfo = "badRequest",    text = "message protection required" },
  cmp_protection_not_allowed = { failinfo = "badRequest",    text = "this kind of message protection is not accepted" },
  cmp_protection_unsupported = { failinfo = "badAlg",        text = "unsupported protection algorithm" },
  cmp_mac_unknown_key        = { failinfo = "badRequest",    text = "MAC verification failed" },
  cmp_mac_failed             = { failinfo = "badRequest",    text = "MAC verification failed" },
  cmp_signature_no_cert      = { failinfo = "badRequest",    text = "no signer certificate in extraCerts" },
  cmp_signature_failed       = { failinfo = "badRequest",    text = "signature verification failed" },
  cmp_signer_untrusted       = { failinfo = "badRequest",    text = "signer certificate is not trusted" },
  cmp_signer_revoked         = { failinfo = "badRequest",    text = "signer certificate is revoked" },
  cmp_revocation_unknown     = { failinfo = "systemUnavail", text = "revocation status of the signer cannot be determined" },
  cmp_no_chains              = { failinfo = "systemUnavail", text = "no issuers configured for signature protection" },
  cmp_type_not_allowed       = { failinfo = "badRequest",    text = "message type not accepted" },
  cmp_bad_template           = { failinfo = "badCertTemplate", text = "certificate template not accepted" },
  cmp_bad_pop                = { failinfo = "badPOP",        text = "proof of possession failed" },
  cmp_denied                 = { failinfo = "badRequest",    text = "request refused by policy" },
  cmp_policy_error           = { failinfo = "systemFailure", text = "request refused: policy error" },
  cmp_upstream_down          = { failinfo = "systemUnavail", text = "CA not reachable" },
  cmp_upstream_timeout       = { failinfo = "systemUnavail", text = "CA did not answer in time" },
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
