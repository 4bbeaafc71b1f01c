-- wrk script: POST one new row per request to a table of (id, client, n).
--
--   wrk -t1 -c32 -d5s --latency -s bench/inserts.lua http://127.0.0.1:PORT/ -- TABLE FIRST_ID
--
-- Ids count up from FIRST_ID (one wrk thread, so they never collide).

local path = "/bench_items"
local next_id = 1
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  path = "/" .. (args[1] or "bench_items")
  next_id = tonumber(args[2] or "1")
end

function request()
  local id = next_id
  next_id = next_id + 1
  local body = '{"id":' .. id .. ',"client":1,"n":' .. id .. '}'
  return wrk.format("POST", path, headers, body)
end
