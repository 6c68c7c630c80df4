-- The shipped example configurations load and have the shape the core expects.
local lu = require("luaunit")
package.path = arg[1] .. "/?.lua;" .. package.path
function deny(status, reason) return { verdict = "deny", status = status, reason = reason } end
local conf = arg[1] .. "/../conf/"

TestExamples = {}

function TestExamples:test_est_example()
  local t = assert(loadfile(conf .. "est.lua.example"))()
  lu.assertEquals(type(t.on_enroll), "function")
  lu.assertNotNil(t.labels[""])
  lu.assertNotNil(t.labels.VPN)
  lu.assertStrContains(t.labels.VPN.upstreams[1], "https://")
  -- the hook refuses a weak key and accepts a proper VPN request
  local weak = { key = { type = "RSA", bits = 1024 }, san = {}, subject = {} }
  lu.assertEquals(t.on_enroll({ label = "", op = "simpleenroll", csr = weak }).status, 400)
  local ok = { key = { type = "EC", bits = 256, curve = "prime256v1" }, cn = "gw.vpn.example.com",
               subject_text = "CN=gw.vpn.example.com", subject = {}, san = { dns = { "gw.vpn.example.com" } } }
  lu.assertNil(t.on_enroll({ label = "VPN", op = "simpleenroll", csr = ok }))
end

function TestExamples:test_cmp_example()
  local t = assert(loadfile(conf .. "cmp.lua.example"))()
  lu.assertEquals(type(t.on_message), "function")
  lu.assertNotNil(t.aliases[t.default_alias])
  lu.assertEquals(t.legacy_prefix:sub(1, 1), "/")
  lu.assertStrContains(t.aliases.gateways.upstreams[1], "https://")
  local weak = { key = { type = "RSA", bits = 1024 }, san = {}, subject = {}, extensions = {} }
  lu.assertEquals(t.on_message({ label = "devices", op = "ir", cmp = { requests = { weak } } }).status, 400)
  local gw = { key = { type = "EC", bits = 256, curve = "prime256v1" }, cn = "vpn1.gw.example.com",
               subject_text = "CN=vpn1.gw.example.com", subject = {}, extensions = {},
               san = { dns = { "vpn1.gw.example.com" } } }
  lu.assertNil(t.on_message({ label = "gateways", op = "cr", cmp = { requests = { gw } } }))
  lu.assertNil(t.on_message({ label = "devices", op = "certConf", cmp = { requests = {} } }))
end

os.exit(lu.LuaUnit.run("-v"))
