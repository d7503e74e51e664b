-- wrk script of the benchmark: what each request is, and one JSON line of results.
--
--   wrk ... -s bench/wrk/bench.lua URL -- paths FILE          GET a random line of FILE
--   wrk ... -s bench/wrk/bench.lua URL -- paths FILE "N: v"   the same, with header N: v
--   wrk ... -s bench/wrk/bench.lua URL -- create PREFIX       POST a new project, unique slug
--   BENCH_SLOW_MS (environment, default 1000): the latency above which a request is "slow"
--
-- Requests are built once per thread in init() (paths) or with a cheap string format
-- (create), so wrk stays light next to the server on a small machine.

local next_thread = 0

function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_number", next_thread)
end

function init(args)
  mode = args[1]
  counter = 0
  math.randomseed(os.time() * 1000 + thread_number)
  if mode == "paths" then
    requests = {}
    local headers = {}
    if args[3] then
      local name, value = args[3]:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    end
    for line in io.lines(args[2]) do
      if line ~= "" then
        requests[#requests + 1] = wrk.format("GET", line, headers)
      end
    end
  elseif mode == "create" then
    prefix = args[2] .. "-" .. thread_number .. "-"
    headers = { ["Content-Type"] = "application/json" }
  else
    error("mode must be paths or create")
  end
end

function request()
  if mode == "paths" then
    return requests[math.random(#requests)]
  end
  counter = counter + 1
  local slug = prefix .. counter
  local body = string.format(
    '{"name":"Load %s","slug":"%s","description":"created by the benchmark"}', slug, slug)
  return wrk.format("POST", "/api/v1/projects", headers, body)
end

-- How many requests took longer than limit_us. latency:percentile(p) returns the value
-- at rank round(p / 100 * count + 0.5), so p = 100 * (r - 0.5) / count is rank r exactly,
-- and a binary search over ranks finds the first slow one in a few dozen calls.
local function slower_than(latency, total, limit_us)
  if total == 0 or latency.max <= limit_us then
    return 0
  end
  local function at_rank(r)
    return latency:percentile(100 * (r - 0.5) / total)
  end
  local low, high = 1, total
  while low < high do
    local middle = math.floor((low + high) / 2)
    if at_rank(middle) > limit_us then
      high = middle
    else
      low = middle + 1
    end
  end
  return total - low + 1
end

function done(summary, latency, requests)
  local slow_ms = tonumber(os.getenv("BENCH_SLOW_MS") or "1000")
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"slow":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    slower_than(latency, summary.requests, slow_ms * 1000)))
end
