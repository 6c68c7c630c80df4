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
end

os.exit(lu.LuaUnit.run("-v"))
