-- wrk script for POST /reseller/v1/topups: every request has its own Idempotency-Key and
-- reference, devices rotate over the seeded inventory. Run by bench/run.py, which sets:
--   BENCH_API_KEYS      reseller API keys (Bearer), comma-separated; requests rotate over them
--   BENCH_DEVICES_FILE  one device identifier per line
--   BENCH_PLAN          plan code (default day-1g)
--   BENCH_RUN_ID        prefix that makes keys and references unique across runs
--   BENCH_THREADS       wrk's -t (to interleave the threads' device sequences)
-- done() prints one line "BENCH_JSON {...}" with counts by status and latency percentiles.

local api_keys = {}
for key in string.gmatch(os.getenv("BENCH_API_KEYS") or "", "[^,]+") do
  api_keys[#api_keys + 1] = key
end
local devices_file = os.getenv("BENCH_DEVICES_FILE")
local plan = os.getenv("BENCH_PLAN") or "day-1g"
local run_id = os.getenv("BENCH_RUN_ID") or tostring(os.time())
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

local devices = {}
for line in io.lines(devices_file) do
  if line ~= "" then
    devices[#devices + 1] = line
  end
end

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
thread_id = 0
counter = 0
statuses = {}
samples = {}

local headers = {["Content-Type"] = "application/json"}

function request()
  counter = counter + 1
  local n = counter * nthreads + thread_id
  local device = devices[(n % #devices) + 1]
  local ref = run_id .. "-" .. thread_id .. "-" .. counter
  headers["Authorization"] = "Bearer " .. api_keys[(n % #api_keys) + 1]
  headers["Idempotency-Key"] = ref
  local body = '{"device":"' .. device .. '","plan":"' .. plan .. '","reference":"' .. ref .. '"}'
  return wrk.format("POST", "/reseller/v1/topups", headers, body)
end

function response(status, hdrs, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status ~= 201 and #samples < 3 then
    samples[#samples + 1] = string.sub(body or "", 1, 300)
  end
end

local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local counts = {}
  local errors = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses") or {}) do
      counts[k] = (counts[k] or 0) + v
    end
    for _, body in ipairs(t:get("samples") or {}) do
      if #errors < 5 then errors[#errors + 1] = json_string(body) end
    end
  end
  local parts = {}
  for k, v in pairs(counts) do
    parts[#parts + 1] = json_string(k) .. ":" .. v
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"statuses":{%s},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"non_2xx":%d,' ..
    '"latency_us":{"min":%d,"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d},' ..
    '"error_samples":[%s]}\n',
    summary.duration, summary.requests, summary.bytes, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(errors, ",")))
end
