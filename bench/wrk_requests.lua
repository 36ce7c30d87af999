-- wrk script for the MCP benchmark: one fixed body, per-request headers from a file (a token, a DPoP proof).
-- wrk -s bench/wrk_requests.lua -H 'name: value'... URL -- HEADERS_FILE BODY_FILE THREADS CYCLE MARKER
-- Each line of HEADERS_FILE is `name<TAB>value[<TAB>name<TAB>value...]`, the headers of one request beside the
-- constant ones given with -H. Each thread takes its own share of the lines. CYCLE=1 repeats them (one reused
-- token); CYCLE=0 sends each line once (fresh tokens, single-use proofs) and a thread out of lines stops rather
-- than replay one. An answer whose body lacks MARKER counts as bad (a JSON-RPC error is HTTP 200). The bench
-- stops wrk with SIGINT after its slice (wrk itself counts whole seconds only).
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local function split(line)
  local fields = {}
  for field in string.gmatch(line, "[^\t]+") do
    fields[#fields + 1] = field
  end
  return fields
end

function init(args)
  local nthreads = tonumber(args[3])
  lines = {}
  local index = 0
  for line in io.lines(args[1]) do
    if index % nthreads == id then
      lines[#lines + 1] = split(line)
    end
    index = index + 1
  end
  local file = io.open(args[2], "rb")
  body = file:read("*a")
  file:close()
  cycle = args[4] == "1"
  marker = args[5]
  cursor = 0
  exhausted = 0
  bad = 0
  stopping = false
  wrk.method = "POST"
end

function request()
  cursor = cursor + 1
  if cursor > #lines then
    if cycle then
      cursor = 1
    else
      exhausted = 1
      stopping = true
      wrk.thread:stop()
      return wrk.format("GET", "/healthz")
    end
  end
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  local fields = lines[cursor]
  for i = 1, #fields, 2 do
    headers[fields[i]] = fields[i + 1]
  end
  return wrk.format(nil, nil, headers, body)
end

function response(status, headers, response_body)
  if stopping then
    return  -- the last, unsent-or-harmless GET of a stopping thread
  end
  if status ~= 200 or not string.find(response_body, marker, 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local ran_out, bad_answers = 0, 0
  for _, thread in ipairs(threads) do
    ran_out = ran_out + thread:get("exhausted")
    bad_answers = bad_answers + thread:get("bad")
  end
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, ' ..
    '"write_errors": %d, "status_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"threads_out_of_bodies": %d, "bad_answers": %d}\n',
    summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), ran_out, bad_answers))
end
