-- protocols.registry: which protocol module handles which URL path.
--
-- Requests in origin form (to enrollgate itself, e.g. /.well-known/est/...) are routed by path
-- prefix to a protocol module under lua/protocols/. The policy lists its routes; this module
-- builds and checks that list. The core matches the longest prefix (compiled at load).
-- Forward-proxy requests (absolute URI, CONNECT) never go through these routes.
local M = {}

--- Default path prefixes of the enrollment protocols (RFC 7030, RFC 8894, RFC 9480/6712).
M.well_known = {
  est  = { "/.well-known/est/" },
  scep = { "/cgi-bin/pkiclient.exe" },
  cmp  = { "/.well-known/cmp" },
  acme = { "/acme/" },
}

--- routes{ est = true, cmp = { "/ejbca/publicweb/cmp/" } } -> list of { prefix=, protocol= }
-- true takes the well-known prefixes; a list gives extra or replacement prefixes.
function M.routes(spec)
  local out, seen = {}, {}
  local names = {}
  for name in pairs(spec) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local v = spec[name]
    local prefixes = v == true and M.well_known[name] or v
    if type(prefixes) ~= "table" then
      error("routes: protocol '" .. tostring(name) .. "' needs true or a list of prefixes", 2)
    end
    for _, p in ipairs(prefixes) do
      if type(p) ~= "string" or p:sub(1, 1) ~= "/" then
        error("routes: prefix for '" .. name .. "' must start with /", 2)
      end
      if seen[p] then error("routes: prefix " .. p .. " routed twice", 2) end
      seen[p] = true
      out[#out + 1] = { prefix = p, protocol = name }
    end
  end
  return out
end

--- Longest-prefix match, as the core does it (for tests and tooling).
function M.resolve(routes, path)
  local best, blen = nil, 0
  for _, r in ipairs(routes) do
    if #r.prefix > blen and path:sub(1, #r.prefix) == r.prefix then best, blen = r.protocol, #r.prefix end
  end
  return best
end

return M
