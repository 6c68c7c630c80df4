-- policies.cmp: what on_message lets through to the CA (the core has checked type and protection).
local lu = require("luaunit")
package.path = arg[1] .. "/?.lua;" .. package.path
function deny(status, reason) return { verdict = "deny", status = status, reason = reason } end
local cmp = require("policies.cmp")

local function req(t)
  return {
    key = t.key or { type = "EC", bits = 256, curve = "prime256v1" },
    cn = t.cn, subject = t.cn and { { type = "CN", value = t.cn } } or {},
    subject_text = t.subject_text or (t.cn and ("CN=" .. t.cn) or ""),
    san = t.san or {}, extensions = t.extensions or {}, requests_ca = t.requests_ca,
  }
end

local function ctx(op, alias, requests, extra)
  local c = { protocol = "cmp", op = op, label = alias,
              cmp = { requests = requests, protection = (extra or {}).protection or "mac" },
              csr = requests[1], device = (extra or {}).device }
  return c
end

TestCmpPolicy = {}

function TestCmpPolicy:test_accepts_a_proper_request_and_non_request_messages()
  local on = cmp.policy{ aliases = { ["*"] = { cn_in_san = true } } }
  lu.assertNil(on(ctx("ir", "devices", { req{ cn = "d1.example.com", san = { dns = { "d1.example.com" } } } })))
  for _, op in ipairs({ "certConf", "pollReq", "genm", "rr" }) do
    lu.assertNil(on(ctx(op, "devices", {})), op)
  end
end

function TestCmpPolicy:test_refuses_weak_keys_in_every_request()
  local on = cmp.policy{}
  local v = on(ctx("cr", "x", { req{ cn = "a" }, req{ cn = "b", key = { type = "RSA", bits = 1024 } } }))
  lu.assertEquals(v.status, 400)
  lu.assertStrContains(v.reason, "request 2: RSA key size 1024")
  v = on(ctx("p10cr", "x", { req{ cn = "a", key = { type = "DSA", bits = 2048 } } }))
  lu.assertStrContains(v.reason, "key type DSA")
end

function TestCmpPolicy:test_name_rules_per_alias()
  local on = cmp.policy{ aliases = { vpn = { dns_under = { "vpn.example.com" } } } }
  lu.assertNil(on(ctx("ir", "vpn", { req{ san = { dns = { "gw.vpn.example.com" } } } })))
  lu.assertStrContains(on(ctx("ir", "vpn", { req{ san = { dns = { "gw.example.org" } } } })).reason, "is not under")
  -- no rules for an alias and no "*": refused
  lu.assertEquals(on(ctx("ir", "other", { req{} })).status, 403)
end

function TestCmpPolicy:test_ca_certificates_and_central_keygen()
  local on = cmp.policy{}
  lu.assertStrContains(on(ctx("ir", "x", { req{ requests_ca = true } })).reason, "CA certificate")
  local nokey = req{ cn = "a", key = { type = "none", bits = 0, curve = "" } }
  lu.assertStrContains(on(ctx("ir", "x", { nokey })).reason, "central key generation")
  lu.assertNil(cmp.policy{ central_keygen = true }(ctx("ir", "x", { nokey })))
end

function TestCmpPolicy:test_kur_keeps_the_names_of_the_certificate_it_renews()
  local on = cmp.policy{}
  local old = { subject_text = "CN=a", san = { dns = { "a.example.com" } } }
  local same = req{ cn = "a", subject_text = "CN=a", san = { dns = { "a.example.com" } } }
  local other = req{ cn = "b", subject_text = "CN=b", san = { dns = { "a.example.com" } } }
  lu.assertNil(on(ctx("kur", "x", { same }, { protection = "signature", device = { cert = old } })))
  lu.assertStrContains(on(ctx("kur", "x", { other }, { protection = "signature", device = { cert = old } })).reason,
                       "differs from the certificate being renewed")
  lu.assertNil(cmp.policy{ kur_same_names = false }(ctx("kur", "x", { other }, { protection = "signature", device = { cert = old } })))
  -- an empty subject keeps the old one, but the SANs it names are still compared
  local keep_subject_new_san = req{ san = { dns = { "b.example.com" } } }
  lu.assertStrContains(on(ctx("kur", "x", { keep_subject_new_san }, { protection = "signature", device = { cert = old } })).reason,
                       "subjectAltNames differ")
  lu.assertNil(on(ctx("kur", "x", { req{} }, { protection = "signature", device = { cert = old } })))  -- keep both
  lu.assertNil(on(ctx("kur", "x", { req{ san = { dns = { "A.example.com" } } } }, { protection = "signature", device = { cert = old } })))
  -- with a MAC there is no certificate to compare with: refused unless kur_same_names = false
  lu.assertStrContains(on(ctx("kur", "x", { other }, { protection = "mac" })).reason, "must be signed with the certificate")
  lu.assertNil(cmp.policy{ kur_same_names = false }(ctx("kur", "x", { other }, { protection = "mac" })))
end

os.exit(lu.LuaUnit.run("-v"))
