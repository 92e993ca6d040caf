-- Open-loop pacing for wrk (bench/peak.py): runs another wrk script of this folder at a fixed
-- offered rate instead of as fast as the connections allow. Sets:
--   BENCH_PACED_SCRIPT  path of the script to run (its request, response and done are used
--                       as they are, e.g. topup.lua or reads.lua, with their own variables)
--   BENCH_RATE          requests per second offered, over all of wrk's threads
--   BENCH_THREADS       wrk's -t: each thread offers BENCH_RATE / BENCH_THREADS
-- Each thread hands out send times one interval apart; a connection asking for its next
-- request waits for the next free send time. When the schedule is behind (every connection
-- busy), requests go out as soon as a connection frees up until it has caught up, so the
-- achieved rate falls below the offered one only when the server cannot keep up. wrk's
-- latencies are measured from the send, as without pacing.

dofile(os.getenv("BENCH_PACED_SCRIPT"))

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } paced_timespec;
int clock_gettime(int clk_id, paced_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local clock = ffi.new("paced_timespec")

local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end

local interval = tonumber(os.getenv("BENCH_THREADS") or "1") / tonumber(os.getenv("BENCH_RATE"))
local next_send = nil

function delay()
  local t = now()
  if next_send == nil then
    next_send = t
  end
  local slot = next_send
  next_send = next_send + interval
  if slot <= t then
    return 0
  end
  return (slot - t) * 1000
end
