-- wrk script for the token benchmarks: POST each pre-signed form body once, in file order.
-- wrk -s bench/wrk_bodies.lua URL -- BODIES_FILE THREADS
-- Each thread sends its own share of the lines; a thread out of bodies stops (and says so in the summary)
-- rather than replay a single-use assertion. With WRK_CAPTURE=FILE set, each thread appends the refresh
-- tokens of its answers to FILE.<thread> (used to prepare refresh-grant bodies; off for measured runs).
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local nthreads = tonumber(args[2])
  bodies = {}
  local index = 0
  for line in io.lines(args[1]) do
    if index % nthreads == id then
      bodies[#bodies + 1] = line
    end
    index = index + 1
  end
  cursor = 0
  exhausted = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  local capture = os.getenv("WRK_CAPTURE")
  if capture then
    out = io.open(capture .. "." .. id, "w")
  end
end

function request()
  cursor = cursor + 1
  local body = bodies[cursor]
  if body == nil then
    -- Never replay a single-use body: stop, and spend the last request on a harmless GET.
    exhausted = 1
    wrk.thread:stop()
    return wrk.format("GET", "/healthz")
  end
  return wrk.format(nil, nil, nil, body)
end

if os.getenv("WRK_CAPTURE") then
  function response(status, headers, body)
    local token = body:match('"refresh_token":"([^"]+)"')
    if token then
      out:write(token, "\n")
      out:flush()
    end
  end
end

function done(summary, latency, requests)
  local ran_out = 0
  for _, thread in ipairs(threads) do
    ran_out = ran_out + thread:get("exhausted")
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"threads_out_of_bodies": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), ran_out))
end
