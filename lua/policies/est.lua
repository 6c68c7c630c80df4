-- policies.est: what an enrollment request (EST; later SCEP/CMP templates) must look like.
--
-- The core parses the PKCS#10 and verifies its self-signature before any of this runs; the
-- policy sees ctx.csr (see docs/est.md):
--   csr.key = { type = "RSA"|"EC"|"ED25519"|..., bits = 2048, curve = "prime256v1" or "" }
--   csr.subject = { { type = "CN", value = "..." }, ... }, csr.cn, csr.subject_text
--   csr.san = { dns = {...}, ip = {...}, email = {...}, uri = {...}, other = {...} }
--   csr.extensions = { "subjectAltName", ... }, csr.challenge_password = true|false,
--   csr.requests_ca = true|false (basicConstraints cA TRUE asked for)
-- and ctx.label, ctx.op, ctx.device = { user = "...", cert = { subject_text =, cn =, san =, serial = } }.
--
-- policy.lua:   local est = require("policies.est")
--               on_enroll = est.policy{ labels = { ["*"] = { cn_in_san = true }, VPN = { dns_under = { "vpn.example.com" } } } }
local net = require("policies.net")
local M = {}

--- The key types enterprise device fleets use; anything else is refused.
M.default_keys = {
  RSA = { 2048, 3072, 4096, 8192 },
  ED25519 = true,
  EC = { "brainpoolP256r1", "brainpoolP384r1", "brainpoolP512r1", "prime256v1", "secp256k1", "secp384r1", "secp521r1" },
}

--- Extensions a device may request; anything else is refused (the CA may copy them).
M.default_extensions = { "subjectAltName", "keyUsage", "extendedKeyUsage", "basicConstraints", "subjectKeyIdentifier" }

local function contains(list, v)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

--- nil if key (csr.key) is one of allowed (default: M.default_keys), else the reason.
function M.check_key(key, allowed)
  allowed = allowed or M.default_keys
  local rule = allowed[key.type]
  if rule == nil then
    return "key type " .. tostring(key.type) .. " is not accepted"
  end
  if key.type == "RSA" then
    if rule ~= true and not contains(rule, key.bits) then
      return "RSA key size " .. tostring(key.bits) .. " is not accepted (allowed: " .. table.concat(rule, ", ") .. ")"
    end
  elseif key.type == "EC" then
    if key.curve == nil or key.curve == "" then
      return "EC key with explicit curve parameters is not accepted"
    end
    if rule ~= true and not contains(rule, key.curve) then
      return "EC curve " .. key.curve .. " is not accepted"
    end
  elseif rule ~= true then
    return "key type " .. tostring(key.type) .. " is not accepted"
  end
  return nil
end

--- nil if the requested extensions are all in allowed (default M.default_extensions) and no CA
-- certificate is asked for (basicConstraints cA TRUE), else the reason.
function M.check_extensions(csr, allowed)
  if csr.requests_ca then return "a CA certificate (basicConstraints cA=TRUE) is not accepted" end
  allowed = allowed or M.default_extensions
  for _, e in ipairs(csr.extensions or {}) do
    if not contains(allowed, e) then return "requested extension " .. e .. " is not accepted" end
  end
  return nil
end

local function list_or_empty(t) return t or {} end

--- Name rules for one label; nil if csr satisfies all, else the first reason. Rules:
--   require_cn = true        the subject has a CN
--   cn_in_san = true         the CN is one of the DNS (or IP / email) SANs
--   dns_under = { "d", ... } every DNS SAN (and a DNS-looking CN) is d or under d
--   ip_in = { "cidr", ... }  every IP SAN lies in one of the CIDRs; without it, IP SANs are refused
--   email_domains = { ... }  every email SAN is at one of the domains; without it, email SANs are refused
--   uri_prefixes = { ... }   every URI SAN starts with one of them; without it, URI SANs are refused
--   max_san = n              at most n SANs (default 20)
--   subject = { O = "Example Org", ... }   these subject attributes must have exactly these values
function M.check_names(csr, rules)
  rules = rules or {}
  local san = csr.san or {}
  local dns, ips, emails, uris = list_or_empty(san.dns), list_or_empty(san.ip), list_or_empty(san.email), list_or_empty(san.uri)
  if san.other and #san.other > 0 then
    return "subjectAltName of type " .. san.other[1] .. " is not accepted"
  end
  local count = #dns + #ips + #emails + #uris
  if count > (rules.max_san or 20) then
    return "too many subjectAltNames (" .. count .. ")"
  end
  local cn = csr.cn
  if rules.require_cn and (cn == nil or cn == "") then
    return "subject has no CN"
  end
  if rules.cn_in_san and cn then
    if not (contains(dns, cn:lower()) or contains(dns, cn) or contains(ips, cn) or contains(emails, cn)) then
      return "CN " .. cn .. " is not one of the subjectAltNames"
    end
  end
  if rules.dns_under then
    local names = {}
    for _, d in ipairs(dns) do names[#names + 1] = d end
    if cn and cn:find("^[%w%-%.]+%.[%a]+$") then names[#names + 1] = cn end
    for _, d in ipairs(names) do
      local ok = false
      for _, dom in ipairs(rules.dns_under) do
        if net.name_under(d, dom) then ok = true break end
      end
      if not ok then return "DNS name " .. d .. " is not under " .. table.concat(rules.dns_under, ", ") end
    end
  end
  for _, ip in ipairs(ips) do
    if not rules.ip_in or not net.ip_in(ip, rules.ip_in) then
      return "IP address " .. ip .. " is not allowed"
    end
  end
  for _, e in ipairs(emails) do
    local dom = e:match("@([^@]+)$")
    if not rules.email_domains or not dom or not contains(rules.email_domains, dom:lower()) then
      return "email address " .. e .. " is not allowed"
    end
  end
  for _, u in ipairs(uris) do
    local ok = false
    for _, p in ipairs(rules.uri_prefixes or {}) do
      if u:sub(1, #p) == p then ok = true break end
    end
    if not ok then return "URI " .. u .. " is not allowed" end
  end
  for k, want in pairs(rules.subject or {}) do
    local got
    for _, a in ipairs(csr.subject or {}) do
      if a.type == k then got = a.value break end
    end
    if got ~= want then
      return "subject " .. k .. " must be " .. want
    end
  end
  return nil
end

local function sorted_names(san)
  local out = {}
  for _, kind in ipairs({ "dns", "ip", "email", "uri" }) do
    for _, v in ipairs((san or {})[kind] or {}) do out[#out + 1] = kind .. ":" .. (kind == "dns" and v:lower() or v) end
  end
  table.sort(out)
  return table.concat(out, ",")
end

--- simplereenroll (RFC 7030 §4.2.2): subject and SANs must be those of the certificate being
-- renewed. nil if they are, else the reason. omitted_keeps = true (a CMP kur template, RFC 4210
-- 5.3.5): an empty subject, or no SANs at all, asks to keep the old ones and is not compared.
function M.same_names(csr, cert, omitted_keeps)
  if not cert then return "re-enrollment needs the client certificate being renewed" end
  local check_subject = not (omitted_keeps and (csr.subject_text or "") == "")
  if check_subject and csr.subject_text ~= cert.subject_text then
    return "subject " .. tostring(csr.subject_text) .. " differs from the certificate being renewed (" ..
        tostring(cert.subject_text) .. ")"
  end
  local sans = sorted_names(csr.san)
  if not (omitted_keeps and sans == "") and sans ~= sorted_names(cert.san) then
    return "subjectAltNames differ from the certificate being renewed"
  end
  return nil
end

--- An on_enroll hook from a spec:
--   keys = { ... }                   accepted key types (default M.default_keys)
--   extensions = { ... }             extensions a request may carry (default M.default_extensions);
--                                    a request for a CA certificate is always refused
--   labels = { ["*"] = rules, VPN = rules, ... }   name rules per label ("" is the unlabelled path;
--                                    "*" applies to labels without their own entry)
--   reenroll_same_names = false      lets a re-enrollment change subject or SANs
-- Refusals are deny(400, reason): EST answers them as 400 Bad Request with the reason.
function M.policy(spec)
  spec = spec or {}
  local labels = spec.labels or { ["*"] = {} }
  return function(ctx)
    local csr = ctx.csr
    local why = M.check_key(csr.key, spec.keys) or M.check_extensions(csr, spec.extensions)
    if why then return deny(400, why) end
    local rules = labels[ctx.label] or labels["*"]
    if rules == nil then return deny(403, "no enrollment rules for label '" .. tostring(ctx.label) .. "'") end
    why = M.check_names(csr, rules)
    if why then return deny(400, why) end
    if ctx.op == "simplereenroll" and spec.reenroll_same_names ~= false then
      why = M.same_names(csr, ctx.device and ctx.device.cert)
      if why then return deny(400, why) end
    end
    return nil
  end
end

return M
