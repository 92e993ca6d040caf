-- wrk script for the read benchmark (bench/reads.py): GET requests rotating over the paths
-- of a file, each with its header (the app token, or the network signature, which binds its
-- path: made by reads.py, no HMAC in Lua). Sets:
--   BENCH_PATHS_FILE   one request per line: the path, then a tab and its header's value
--   BENCH_HEADER_NAME  the header sent with every request (optional; then no tab and value)
--   BENCH_THREADS      wrk's -t (to interleave the threads' path sequences)
-- done() prints one line "BENCH_JSON {...}" with counts by status and latency percentiles.

local paths = {}
local values = {}
for line in io.lines(os.getenv("BENCH_PATHS_FILE")) do
  if line ~= "" then
    local path, value = string.match(line, "^([^\t]*)\t?(.*)$")
    paths[#paths + 1] = path
    values[#values + 1] = value
  end
end
local header_name = os.getenv("BENCH_HEADER_NAME") or ""
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")

local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

thread_id = 0
counter = 0
statuses = {}
samples = {}

-- Each path's request, formatted on first use (wrk.format needs wrk's Host header, set after
-- the script is loaded).
local formatted = {}

function request()
  counter = counter + 1
  local i = ((counter * nthreads + thread_id) % #paths) + 1
  local req = formatted[i]
  if req == nil then
    local headers = {}
    if header_name ~= "" then
      headers[header_name] = values[i]
    end
    req = wrk.format("GET", paths[i], headers)
    formatted[i] = req
  end
  return req
end

function response(status, hdrs, body)
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if status ~= 200 and #samples < 3 then
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
    'BENCH_JSON {"duration_us":%d,"requests":%d,"statuses":{%s},' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d},"error_samples":[%s]}\n',
    summary.duration, summary.requests, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(errors, ",")))
end
