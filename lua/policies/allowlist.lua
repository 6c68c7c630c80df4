-- policies.allowlist: helpers to write allowlist rules in policy.lua.
--
-- Plain tables work too; rule{} checks a rule where it is written, so a mistake is reported
-- as policy.lua:LINE by `enrollgate check`, and fills in the name if it is missing.
-- The rules are compiled into a C matcher at load (core/allowlist.c): nothing here runs per request.
local M = {}

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

local function is_port_spec(p)
  if math.type(p) == "integer" then return p >= 1 and p <= 65535 end
  if type(p) ~= "string" then return false end
  local lo, hi = p:match("^(%d+)%-(%d+)$")
  if not lo then lo = p:match("^(%d+)$"); hi = lo end
  lo, hi = tonumber(lo), tonumber(hi)
  return lo ~= nil and lo >= 1 and hi <= 65535 and lo <= hi
end

local function is_host_pattern(h)
  if type(h) ~= "string" or #h == 0 or #h > 255 then return false end
  local name = h:match("^%*%.(.+)$") or h
  if name:find("^%[") then return name:find("^%[[%x:.]+%]$") ~= nil end
  return name:find("^[%w%-_.:]+$") ~= nil and not name:find("%.%.")
end

--- Validate one rule table; returns it (with a generated name if missing). Errors point at the caller.
function M.rule(t, level)
  if type(t) ~= "table" then fail("rule: expected a table", level) end
  for k in pairs(t) do
    if k ~= "name" and k ~= "hosts" and k ~= "ports" and k ~= "cidrs" then
      fail("rule: unknown key '" .. tostring(k) .. "'", level)
    end
  end
  if type(t.ports) ~= "table" or #t.ports == 0 then
    fail("rule " .. tostring(t.name or "(unnamed)") .. ": ports is required (an empty list does not mean all ports)", level)
  end
  for _, p in ipairs(t.ports) do
    if not is_port_spec(p) then fail("rule " .. tostring(t.name or "(unnamed)") .. ": bad port " .. tostring(p), level) end
  end
  if (t.hosts == nil or #t.hosts == 0) and (t.cidrs == nil or #t.cidrs == 0) then
    fail("rule " .. tostring(t.name or "(unnamed)") .. ": names no hosts and no cidrs", level)
  end
  for _, h in ipairs(t.hosts or {}) do
    if not is_host_pattern(h) then fail("rule " .. tostring(t.name or "(unnamed)") .. ": bad host pattern " .. tostring(h), level) end
  end
  if t.name == nil then
    t.name = (t.hosts and t.hosts[1]) or (t.cidrs and t.cidrs[1]) or "rule"
  end
  return t
end

--- Build a list of rules, checking each (level adjusted so errors name the policy's line).
function M.rules(list)
  if type(list) ~= "table" then fail("rules: expected a list") end
  for i, r in ipairs(list) do list[i] = M.rule(r, 2) end
  return list
end

M.is_port_spec = is_port_spec
M.is_host_pattern = is_host_pattern
return M
