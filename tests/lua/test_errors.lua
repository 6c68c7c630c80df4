local lu = require("luaunit")
package.path = arg[1] .. "/?.lua;" .. package.path
-- the sandbox provides deny(); give the test the same constructor
function deny(status, reason) return { verdict = "deny", status = status, reason = reason } end
local E = require("policies.errors")

TestErrors = {}

function TestErrors:test_known_code()
  local s, t = E.lookup("upstream_timeout")
  lu.assertEquals(s, 504)
  lu.assertStrContains(t, "in time")
end

function TestErrors:test_est_codes()
  lu.assertEquals(E.lookup("est_upstream_down"), 503)
  lu.assertEquals(E.lookup("est_upstream_bad_answer"), 502)
end

function TestErrors:test_unknown_code_fails_closed()
  local s = E.lookup("no_such_code")
  lu.assertEquals(s, 403)
end

function TestErrors:test_deny_with_detail()
  local v = E.deny("sni_mismatch", "a.example vs b.example")
  lu.assertEquals(v.verdict, "deny")
  lu.assertEquals(v.status, 403)
  lu.assertStrContains(v.reason, "a.example vs b.example")
end

os.exit(lu.LuaUnit.run("-v"))
