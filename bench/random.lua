-- wrk script: a random id in every request (uniform over FIRST..LAST, a fixed seed).
--
--   wrk -t1 -c64 -d10s --latency -s bench/random.lua http://127.0.0.1:PORT/ -- TEMPLATE FIRST LAST [PAD] [HEADER]
--
-- TEMPLATE is a path with "{id}" where the id goes (e.g. "/products?id=eq.{id}"). PAD > 0
-- writes the id zero-padded to that width (PocketBase's 15-character record ids). HEADER,
-- e.g. "Prefer: count=exact", is sent with every request. The seed is fixed, so every run
-- sends the same sequence; over a large range, nearly every id is new to the server.

local template = "/"
local first = 1
local last = 1
local fmt = "%d"
local headers = {}

function init(args)
  template = args[1] or template
  first = tonumber(args[2] or "1")
  last = tonumber(args[3] or tostring(first))
  local pad = tonumber(args[4] or "0")
  if pad > 0 then
    fmt = "%0" .. pad .. "d"
  end
  local header = args[5] or ""
  local name, value = string.match(header, "^([^:]+):%s*(.*)$")
  if name then
    headers[name] = value
  end
  math.randomseed(20240518)
end

function request()
  local id = string.format(fmt, math.random(first, last))
  local path = (string.gsub(template, "{id}", id))
  return wrk.format(nil, path, headers)
end
