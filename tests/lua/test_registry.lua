local lu = require("luaunit")
package.path = arg[1] .. "/?.lua;" .. package.path
local R = require("protocols.registry")

TestRegistry = {}

function TestRegistry:test_well_known_routes()
  local routes = R.routes({ est = true, cmp = true })
  lu.assertEquals(R.resolve(routes, "/.well-known/est/simpleenroll"), "est")
  lu.assertEquals(R.resolve(routes, "/.well-known/est/VPN/simpleenroll"), "est")
  lu.assertEquals(R.resolve(routes, "/.well-known/cmp/p/alias"), "cmp")
  lu.assertNil(R.resolve(routes, "/other"))
end

function TestRegistry:test_longest_prefix_wins()
  local routes = R.routes({ cmp = { "/ejbca/", "/ejbca/publicweb/cmp/" }, est = { "/ejbca/publicweb/est/" } })
  lu.assertEquals(R.resolve(routes, "/ejbca/publicweb/est/x"), "est")
  lu.assertEquals(R.resolve(routes, "/ejbca/publicweb/cmp/a"), "cmp")
end

function TestRegistry:test_bad_specs()
  lu.assertErrorMsgContains("must start with /", R.routes, { est = { "well-known" } })
  lu.assertErrorMsgContains("needs true or a list", R.routes, { est = 1 })
  lu.assertErrorMsgContains("routed twice", R.routes, { est = { "/x" }, cmp = { "/x" } })
end

function TestRegistry:test_protocol_modules_declare_api()
  local fwd = require("protocols.forward")
  lu.assertEquals(fwd.api_version, 1)
  -- every protocol the registry knows has a module; EST and CMP name the listener serving them
  for name in pairs(R.well_known) do
    local m = require("protocols." .. name)
    lu.assertEquals(m.api_version, 1, name)
    lu.assertEquals(m.name, name)
  end
  lu.assertStrContains(require("protocols.est").served_by, "est.lua")
  lu.assertStrContains(require("protocols.cmp").served_by, "cmp.lua")
  lu.assertNil(require("protocols.scep").served_by)
end

os.exit(lu.LuaUnit.run("-v"))
