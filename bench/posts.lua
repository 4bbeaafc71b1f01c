-- wrk script: POST new order_items rows, JSON bodies built once in init().
--
--   wrk -t1 -c32 -d5s --latency -s bench/posts.lua http://127.0.0.1:PORT/ -- \
--       PATH ROWS ORDER_FIRST ORDER_LAST PRODUCT_FIRST PRODUCT_LAST
--
-- ROWS = 1: each body is one JSON object; ROWS > 1: a JSON array of ROWS objects. 64 bodies
-- are built up front (order_id / product_id walk the given ranges with prime strides, quantity
-- 1..9 > 0, unit_price with cents) and sent round-robin, so request() only picks one.

local path = "/order_items"
local bodies = {}
local nbodies = 64
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

local function item(k, of, ol, pf, pl)
  local order_id = of + (k * 7919) % (ol - of + 1)
  local product_id = pf + (k * 104729) % (pl - pf + 1)
  local quantity = 1 + k % 9
  local price = string.format("%d.%02d", 1 + k % 500, k % 100)
  return '{"order_id":' .. order_id .. ',"product_id":' .. product_id ..
         ',"quantity":' .. quantity .. ',"unit_price":' .. price .. '}'
end

function init(args)
  path = args[1] or path
  local rows = tonumber(args[2] or "1")
  local of, ol = tonumber(args[3] or "1"), tonumber(args[4] or "1")
  local pf, pl = tonumber(args[5] or "1"), tonumber(args[6] or "1")
  local k = 0
  for b = 1, nbodies do
    if rows == 1 then
      bodies[b] = item(k, of, ol, pf, pl)
      k = k + 1
    else
      local parts = {}
      for r = 1, rows do
        parts[r] = item(k, of, ol, pf, pl)
        k = k + 1
      end
      bodies[b] = "[" .. table.concat(parts, ",") .. "]"
    end
  end
end

function request()
  counter = counter + 1
  return wrk.format("POST", path, headers, bodies[(counter % nbodies) + 1])
end
