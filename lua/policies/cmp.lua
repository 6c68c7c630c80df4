-- policies.cmp: what a CMP message (RFC 4210/9480) must look like before it reaches the CA.
--
-- The core has already parsed the message, checked its type against the alias and verified its
-- protection (MAC with the keyId's secret, or a signature whose signer chains to the alias'
-- issuers and is not revoked). on_message(ctx) then sees:
--   ctx.protocol = "cmp", ctx.label = the alias, ctx.op = the message type ("ir", "cr", "p10cr",
--   "kur", "rr", "certConf", "pollReq", "genm", ...)
--   ctx.cmp = { sender =, recipient =, key_id =, transaction_id =, protection = "mac"|"signature"|"none",
--               pvno =, requests = { <csr>, ... } }   (the certificate templates of ir/cr/kur, the p10cr request)
--   ctx.csr = ctx.cmp.requests[1] or nil; a template has the same fields as an EST CSR (see policies.est),
--             key.type "none" when the client asks the CA to generate the key
--   ctx.device.cert = the signer's certificate (signature protection), as in EST
-- A deny(status, reason) refuses the message: the client gets a CMP error message (failInfo and text
-- from policies.errors map.cmp_denied, the reason appended).
--
-- cmp.lua:   on_message = require("policies.cmp").policy{ aliases = { ["*"] = { cn_in_san = true } } }
local est = require("policies.est")
local M = {}

--- Message types that carry certificate requests.
M.request_types = { ir = true, cr = true, p10cr = true, kur = true }

--- An on_message hook from a spec:
--   keys = { ... }                 accepted key types (default policies.est.default_keys)
--   extensions = { ... }           extensions a template may ask for (default policies.est.default_extensions)
--   aliases = { ["*"] = rules, NAME = rules }   name rules per alias (policies.est.check_names);
--                                  "*" applies to aliases without their own entry
--   central_keygen = false         true lets a template without a public key through (the CA makes the key)
--   kur_same_names = true          a kur must keep the subject and SANs of the certificate it renews
--                                  (the signer's certificate): it must be signature-protected
--                                  (RFC 9483 4.1.3), and an empty subject or no SANs in its
--                                  template keep the old ones (RFC 4210 5.3.5)
function M.policy(spec)
  spec = spec or {}
  local aliases = spec.aliases or { ["*"] = {} }
  return function(ctx)
    if not M.request_types[ctx.op] then return nil end
    local rules = aliases[ctx.label] or aliases["*"]
    if rules == nil then return deny(403, "no rules for alias '" .. tostring(ctx.label) .. "'") end
    for i, csr in ipairs(ctx.cmp.requests) do
      local why
      if csr.key.type == "none" then
        if not spec.central_keygen then why = "the request has no public key (central key generation is not offered)" end
      else
        why = est.check_key(csr.key, spec.keys)
      end
      why = why or est.check_extensions(csr, spec.extensions) or est.check_names(csr, rules)
      if not why and ctx.op == "kur" and spec.kur_same_names ~= false then
        if ctx.cmp.protection ~= "signature" then
          why = "a kur must be signed with the certificate it renews (" .. tostring(ctx.cmp.protection) .. " protection)"
        else
          why = est.same_names(csr, ctx.device and ctx.device.cert, true)
        end
      end
      if why then
        return deny(400, #ctx.cmp.requests > 1 and ("request " .. i .. ": " .. why) or why)
      end
    end
    return nil
  end
end

return M
