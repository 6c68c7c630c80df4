-- policies.net: IP address and CIDR helpers for policies (pure Lua, no state).
--
-- Addresses are compared as byte strings: "10.1.2.3" -> 4 bytes, "2001:db8::7" -> 16 bytes.
-- An IPv4 address never matches an IPv6 prefix and the other way round, except that
-- "::ffff:a.b.c.d" is taken as the IPv4 address it maps.
local M = {}

local function parse_v4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local out = {}
  for _, p in ipairs({ a, b, c, d }) do
    if #p > 3 or (#p > 1 and p:sub(1, 1) == "0") then return nil end -- no octal-looking parts
    local n = tonumber(p)
    if n > 255 then return nil end
    out[#out + 1] = string.char(n)
  end
  return table.concat(out)
end

local function parse_groups(part)
  -- "a:b:c" -> list of 16-bit numbers; a trailing dotted quad counts as two groups
  local groups = {}
  if part == "" then return groups end
  local fields = {}
  for f in (part .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
  for i, f in ipairs(fields) do
    if i == #fields and f:find("%.") then
      local v4 = parse_v4(f)
      if not v4 then return nil end
      groups[#groups + 1] = v4:byte(1) * 256 + v4:byte(2)
      groups[#groups + 1] = v4:byte(3) * 256 + v4:byte(4)
    else
      if not f:match("^%x%x?%x?%x?$") then return nil end
      groups[#groups + 1] = tonumber(f, 16)
    end
  end
  return groups
end

local function parse_v6(s)
  if not s:find(":") or #s > 45 then return nil end
  local head, tail = s:match("^(.-)::(.*)$")
  local hg, tg
  if head then
    if tail:find("::") then return nil end
    hg, tg = parse_groups(head), parse_groups(tail)
    if not hg or not tg or #hg + #tg > 7 then return nil end
  else
    hg, tg = parse_groups(s), {}
    if not hg or #hg ~= 8 then return nil end
  end
  local all = {}
  for _, g in ipairs(hg) do all[#all + 1] = g end
  for _ = 1, 8 - #hg - #tg do all[#all + 1] = 0 end
  for _, g in ipairs(tg) do all[#all + 1] = g end
  local out = {}
  for _, g in ipairs(all) do out[#out + 1] = string.char(g // 256, g % 256) end
  return table.concat(out)
end

--- "10.1.2.3" / "2001:db8::1" -> byte string (4 or 16 bytes), or nil if not an address.
function M.parse_ip(s)
  if type(s) ~= "string" then return nil end
  local b = parse_v4(s) or parse_v6(s)
  if b and #b == 16 and b:sub(1, 12) == "\0\0\0\0\0\0\0\0\0\0\255\255" then
    return b:sub(13) -- v4-mapped
  end
  return b
end

--- "10.0.0.0/8" -> bytes, prefix length; nil, message if malformed. A bare address is a /32 or /128.
function M.parse_cidr(s)
  if type(s) ~= "string" then return nil, "CIDR must be a string" end
  local addr, len = s:match("^(.-)/(%d+)$")
  addr = addr or s
  local b = M.parse_ip(addr)
  if not b then return nil, "bad address in CIDR " .. s end
  local max = #b * 8
  local n = len and tonumber(len) or max
  if n > max or (len and #len > 1 and len:sub(1, 1) == "0") then return nil, "bad prefix length in CIDR " .. s end
  return b, n
end

local function prefix_equal(a, b, bits)
  local full = bits // 8
  if a:sub(1, full) ~= b:sub(1, full) then return false end
  local rest = bits % 8
  if rest == 0 then return true end
  local mask = 0xff - ((1 << (8 - rest)) - 1)
  return (a:byte(full + 1) & mask) == (b:byte(full + 1) & mask)
end

--- true if address text ip lies in one of the CIDRs (a list or a single string).
function M.ip_in(ip, cidrs)
  local a = M.parse_ip(ip)
  if not a then return false end
  if type(cidrs) == "string" then cidrs = { cidrs } end
  for _, c in ipairs(cidrs) do
    local b, n = M.parse_cidr(c)
    if b and #b == #a and prefix_equal(a, b, n) then return true end
  end
  return false
end

--- true if DNS name is domain itself or a name under it (case-insensitive, no wildcard tricks).
function M.name_under(name, domain)
  if type(name) ~= "string" or type(domain) ~= "string" then return false end
  name, domain = name:lower():gsub("%.$", ""), domain:lower():gsub("^%.", ""):gsub("%.$", "")
  if name == domain then return true end
  return #name > #domain + 1 and name:sub(-(#domain + 1)) == "." .. domain
end

return M
