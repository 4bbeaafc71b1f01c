-- wrk script: every request a read never sent before (a cold cache on every request).
--
--   wrk -t1 -c32 -d5s --latency -s bench/cold.lua http://127.0.0.1:PORT/ -- TEMPLATE FIRST LAST BASE
--
-- TEMPLATE has "{id}" (walks FIRST..LAST in a fixed permutation, as bench/ids.lua) and "{n}"
-- (BASE + a request counter, e.g. "limit={n}"). The harness passes a new BASE to every wrk
-- run, so no two requests of a bench run share a query string, and none can be a cache hit.

local template = "/"
local first = 1
local last = 1
local base = 1000000
local stride = 7919
local counter = 0

function init(args)
  template = args[1] or template
  first = tonumber(args[2] or "1")
  last = tonumber(args[3] or tostring(first))
  base = tonumber(args[4] or "1000000")
  if (last - first + 1) % stride == 0 then
    stride = 1
  end
end

function request()
  local n = last - first + 1
  local id = first + (counter * stride) % n
  local path = string.gsub(template, "{id}", tostring(id))
  path = string.gsub(path, "{n}", string.format("%d", base + counter))
  counter = counter + 1
  return wrk.format(nil, path)
end
