local lu = require("luaunit")
package.path = arg[1] .. "/?.lua;" .. package.path
-- the sandbox provides deny(); give the test the same constructor
function deny(status, reason) return { verdict = "deny", status = status, reason = reason } end
local est = require("policies.est")
local net = require("policies.net")

local function csr(t)
  local c = {
    key = t.key or { type = "EC", bits = 256, curve = "prime256v1" },
    cn = t.cn, subject = t.subject or (t.cn and { { type = "CN", value = t.cn } } or {}),
    subject_text = t.subject_text or (t.cn and ("CN=" .. t.cn) or ""),
    san = t.san or {},
  }
  return c
end

TestKeys = {}

function TestKeys:test_accepted_key_types()
  for _, k in ipairs({
    { type = "RSA", bits = 2048 }, { type = "RSA", bits = 3072 }, { type = "RSA", bits = 4096 }, { type = "RSA", bits = 8192 },
    { type = "ED25519", bits = 256 },
    { type = "EC", bits = 256, curve = "brainpoolP256r1" }, { type = "EC", bits = 384, curve = "brainpoolP384r1" },
    { type = "EC", bits = 512, curve = "brainpoolP512r1" }, { type = "EC", bits = 256, curve = "prime256v1" },
    { type = "EC", bits = 256, curve = "secp256k1" }, { type = "EC", bits = 384, curve = "secp384r1" },
    { type = "EC", bits = 521, curve = "secp521r1" },
  }) do
    lu.assertNil(est.check_key(k), k.type .. tostring(k.bits) .. tostring(k.curve))
  end
end

function TestKeys:test_refused_key_types()
  lu.assertStrContains(est.check_key({ type = "RSA", bits = 1024 }), "RSA key size 1024")
  lu.assertStrContains(est.check_key({ type = "RSA", bits = 2047 }), "not accepted")
  lu.assertStrContains(est.check_key({ type = "EC", bits = 192, curve = "prime192v1" }), "prime192v1")
  lu.assertStrContains(est.check_key({ type = "EC", bits = 256, curve = "" }), "explicit")
  lu.assertStrContains(est.check_key({ type = "DSA", bits = 2048 }), "DSA")
  lu.assertStrContains(est.check_key({ type = "ED448", bits = 456 }), "ED448")
  lu.assertStrContains(est.check_key({ type = "RSA-PSS", bits = 2048 }), "RSA-PSS")
end

function TestKeys:test_custom_key_list()
  local only_p384 = { EC = { "secp384r1" } }
  lu.assertNil(est.check_key({ type = "EC", curve = "secp384r1" }, only_p384))
  lu.assertNotNil(est.check_key({ type = "EC", curve = "prime256v1" }, only_p384))
  lu.assertNotNil(est.check_key({ type = "RSA", bits = 4096 }, only_p384))
end

TestNames = {}

function TestNames:test_cn_in_san()
  lu.assertNil(est.check_names(csr{ cn = "a.example.com", san = { dns = { "a.example.com" } } }, { cn_in_san = true }))
  lu.assertStrContains(est.check_names(csr{ cn = "a.example.com", san = { dns = { "b.example.com" } } }, { cn_in_san = true }),
    "not one of the subjectAltNames")
  lu.assertStrContains(est.check_names(csr{}, { require_cn = true }), "no CN")
end

function TestNames:test_dns_under()
  local r = { dns_under = { "vpn.example.com" } }
  lu.assertNil(est.check_names(csr{ cn = "gw1.vpn.example.com", san = { dns = { "gw1.vpn.example.com", "vpn.example.com" } } }, r))
  lu.assertStrContains(est.check_names(csr{ san = { dns = { "evil-vpn.example.com" } } }, r), "evil-vpn.example.com")
  lu.assertStrContains(est.check_names(csr{ san = { dns = { "vpn.example.com.evil.net" } } }, r), "not under")
  lu.assertStrContains(est.check_names(csr{ cn = "x.other.org" }, r), "x.other.org") -- a DNS-looking CN counts
end

function TestNames:test_ip_email_uri_refused_unless_allowed()
  lu.assertStrContains(est.check_names(csr{ san = { ip = { "10.1.2.3" } } }, {}), "10.1.2.3")
  lu.assertNil(est.check_names(csr{ san = { ip = { "10.1.2.3", "2001:db8::7" } } }, { ip_in = { "10.0.0.0/8", "2001:db8::/32" } }))
  lu.assertStrContains(est.check_names(csr{ san = { ip = { "11.1.2.3" } } }, { ip_in = { "10.0.0.0/8" } }), "11.1.2.3")
  lu.assertStrContains(est.check_names(csr{ san = { email = { "a@example.com" } } }, {}), "a@example.com")
  lu.assertNil(est.check_names(csr{ san = { email = { "a@Example.com" } } }, { email_domains = { "example.com" } }))
  lu.assertStrContains(est.check_names(csr{ san = { uri = { "urn:x" } } }, { uri_prefixes = { "urn:dev:" } }), "urn:x")
  lu.assertNil(est.check_names(csr{ san = { uri = { "urn:dev:1" } } }, { uri_prefixes = { "urn:dev:" } }))
  lu.assertStrContains(est.check_names(csr{ san = { other = { "otherName" } } }, {}), "otherName")
end

function TestNames:test_subject_values_and_max_san()
  local c = csr{ cn = "a", subject = { { type = "O", value = "Example Org" }, { type = "CN", value = "a" } } }
  lu.assertNil(est.check_names(c, { subject = { O = "Example Org" } }))
  lu.assertStrContains(est.check_names(c, { subject = { O = "Other" } }), "subject O must be Other")
  local many = {}
  for i = 1, 5 do many[i] = "n" .. i .. ".example.com" end
  lu.assertStrContains(est.check_names(csr{ san = { dns = many } }, { max_san = 4 }), "too many")
end

TestPolicy = {}

function TestPolicy:test_label_rules_and_fallback()
  local hook = est.policy{ labels = { ["*"] = {}, VPN = { dns_under = { "vpn.example.com" } } } }
  local c = csr{ cn = "x.example.org", san = { dns = { "x.example.org" } } }
  lu.assertNil(hook({ label = "", op = "simpleenroll", csr = c }))
  local v = hook({ label = "VPN", op = "simpleenroll", csr = c })
  lu.assertEquals(v.status, 400)
  lu.assertStrContains(v.reason, "not under")
end

function TestPolicy:test_no_rules_for_label_denies()
  local hook = est.policy{ labels = { VPN = {} } }
  local v = hook({ label = "wifi", op = "simpleenroll", csr = csr{} })
  lu.assertEquals(v.status, 403)
end

function TestPolicy:test_bad_key_is_400()
  local hook = est.policy{}
  local v = hook({ label = "", op = "simpleenroll", csr = csr{ key = { type = "RSA", bits = 1024 } } })
  lu.assertEquals(v.status, 400)
  lu.assertStrContains(v.reason, "1024")
end

function TestPolicy:test_reenroll_must_keep_names()
  local hook = est.policy{}
  local cert = { subject_text = "CN=a.example.com", san = { dns = { "a.example.com" } } }
  local same = csr{ cn = "a.example.com", san = { dns = { "A.example.com" } } }
  lu.assertNil(hook({ label = "", op = "simplereenroll", csr = same, device = { cert = cert } }))
  local other = csr{ cn = "b.example.com", subject_text = "CN=b.example.com", san = { dns = { "a.example.com" } } }
  lu.assertStrContains(hook({ label = "", op = "simplereenroll", csr = other, device = { cert = cert } }).reason, "differs")
  local more = csr{ cn = "a.example.com", san = { dns = { "a.example.com", "c.example.com" } } }
  lu.assertStrContains(hook({ label = "", op = "simplereenroll", csr = more, device = { cert = cert } }).reason, "differ")
  lu.assertStrContains(hook({ label = "", op = "simplereenroll", csr = same, device = {} }).reason, "client certificate")
  local lax = est.policy{ reenroll_same_names = false }
  lu.assertNil(lax({ label = "", op = "simplereenroll", csr = other, device = {} }))
end

function TestPolicy:test_extensions()
  local hook = est.policy{}
  local c = csr{ cn = "a.example.com", san = { dns = { "a.example.com" } } }
  c.extensions = { "subjectAltName", "keyUsage" }
  lu.assertNil(hook({ label = "", op = "simpleenroll", csr = c }))
  c.extensions = { "subjectAltName", "nameConstraints" }
  lu.assertStrContains(hook({ label = "", op = "simpleenroll", csr = c }).reason, "nameConstraints")
  c.extensions = { "basicConstraints" }
  c.requests_ca = true
  lu.assertStrContains(hook({ label = "", op = "simpleenroll", csr = c }).reason, "CA certificate")
  c.requests_ca = false
  lu.assertNil(est.policy{ extensions = { "basicConstraints" } }({ label = "", op = "simpleenroll", csr = c }))
end

TestNet = {}

function TestNet:test_parse_ip()
  lu.assertEquals(#net.parse_ip("10.1.2.3"), 4)
  lu.assertEquals(#net.parse_ip("2001:db8::7"), 16)
  lu.assertEquals(net.parse_ip("::ffff:10.1.2.3"), net.parse_ip("10.1.2.3"))
  lu.assertEquals(net.parse_ip("1:2:3:4:5:6:7:8"), net.parse_ip("1:2:3:4:5:6:7:8"))
  lu.assertEquals(net.parse_ip("::"), string.rep("\0", 16))
  for _, bad in ipairs({ "256.1.1.1", "1.2.3", "01.2.3.4", "1::2::3", "1:2:3:4:5:6:7:8:9", "g::1", "", "1.2.3.4.5", "::1.2.3" }) do
    lu.assertNil(net.parse_ip(bad), bad)
  end
end

function TestNet:test_ip_in()
  lu.assertTrue(net.ip_in("10.200.1.1", { "10.0.0.0/8" }))
  lu.assertFalse(net.ip_in("11.0.0.1", "10.0.0.0/8"))
  lu.assertTrue(net.ip_in("192.168.1.130", "192.168.1.128/25"))
  lu.assertFalse(net.ip_in("192.168.1.127", "192.168.1.128/25"))
  lu.assertTrue(net.ip_in("2001:db8:1::5", "2001:db8::/32"))
  lu.assertFalse(net.ip_in("2001:db9::5", "2001:db8::/32"))
  lu.assertFalse(net.ip_in("10.0.0.1", "::/0")) -- families never mix
  lu.assertTrue(net.ip_in("10.0.0.1", "0.0.0.0/0"))
  lu.assertFalse(net.ip_in("10.0.0.1", "10.0.0.0/33"))
end

function TestNet:test_name_under()
  lu.assertTrue(net.name_under("a.b.example.com", "example.com"))
  lu.assertTrue(net.name_under("EXAMPLE.com.", "example.com"))
  lu.assertFalse(net.name_under("badexample.com", "example.com"))
  lu.assertFalse(net.name_under("example.com.evil", "example.com"))
end

os.exit(lu.LuaUnit.run("-v"))
