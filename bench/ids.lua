-- wrk script: one different row per request, over a fixed deterministic range of ids.
--
--   wrk -t1 -c32 -d10s --latency -s bench/ids.lua http://127.0.0.1:PORT/ -- TEMPLATE FIRST LAST
--
-- TEMPLATE is a path and query with "{id}" where the id goes, e.g. "/orders?id=eq.{id}".
-- Ids run over FIRST..LAST in a fixed permutation (a prime stride), so consecutive
-- requests hit rows far apart and every run sends the same sequence.

local template = "/"
local first = 1
local last = 1
local stride = 7919
local counter = 0

function init(args)
  template = args[1] or template
  first = tonumber(args[2] or "1")
  last = tonumber(args[3] or tostring(first))
  local n = last - first + 1
  if n % stride == 0 then
    stride = 1
  end
end

function request()
  local n = last - first + 1
  local id = first + (counter * stride) % n
  counter = counter + 1
  local path = (string.gsub(template, "{id}", tostring(id)))
  return wrk.format(nil, path)
end
