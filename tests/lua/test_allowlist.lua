local lu = require("luaunit")
package.path = arg[1] .. "/?.lua;" .. package.path
local A = require("policies.allowlist")

TestAllowlist = {}

function TestAllowlist:test_valid_rule_gets_name()
  local r = A.rule({ hosts = { "ca.example.com" }, ports = { 443 } })
  lu.assertEquals(r.name, "ca.example.com")
end

function TestAllowlist:test_empty_ports_is_an_error()
  lu.assertErrorMsgContains("ports is required", A.rule, { name = "x", hosts = { "a.example" }, ports = {} })
  lu.assertErrorMsgContains("ports is required", A.rule, { name = "x", hosts = { "a.example" } })
end

function TestAllowlist:test_port_specs()
  lu.assertTrue(A.is_port_spec(443))
  lu.assertTrue(A.is_port_spec("8000-8100"))
  lu.assertFalse(A.is_port_spec(0))
  lu.assertFalse(A.is_port_spec(65536))
  lu.assertFalse(A.is_port_spec("9-1"))
  lu.assertFalse(A.is_port_spec("abc"))
  lu.assertFalse(A.is_port_spec(1.5))
end

function TestAllowlist:test_host_patterns()
  lu.assertTrue(A.is_host_pattern("*.digicert.com"))
  lu.assertTrue(A.is_host_pattern("127.0.0.1"))
  lu.assertFalse(A.is_host_pattern("a..b"))
  lu.assertFalse(A.is_host_pattern("a b"))
  lu.assertFalse(A.is_host_pattern(""))
end

function TestAllowlist:test_unknown_key()
  lu.assertErrorMsgContains("unknown key 'port'", A.rule, { hosts = { "a.example" }, port = { 1 } })
end

function TestAllowlist:test_needs_hosts_or_cidrs()
  lu.assertErrorMsgContains("no hosts and no cidrs", A.rule, { name = "n", ports = { 1 } })
  lu.assertEquals(A.rule({ cidrs = { "10.0.0.0/8" }, ports = { 1 } }).name, "10.0.0.0/8")
end

function TestAllowlist:test_rules_checks_each()
  lu.assertErrorMsgContains("bad port", A.rules, { { hosts = { "a.example" }, ports = { 1 } }, { hosts = { "b" }, ports = { "x" } } })
end

os.exit(lu.LuaUnit.run("-v"))
