-- wrk script for bench/run.py: posts pre-built A2A bodies round-robin.
--
-- Arguments (after `--`): the mode, "header" (the client sets x-context-id
-- itself, variant a) or "body" (the proxy must find the contextId), either
-- with "+context" in a run with a filter-state variant (every request also
-- carries its contextId in x-bench-context, for the upstream to answer a
-- request that arrives without x-context-id), then one or more
-- CONTEXT_ID@FILE pairs. Requests are formatted once in init(), so
-- wrk's own per-request work is a table lookup whatever the body size.

local requests = {}
local count = 0
local next_index = 0

function init(args)
  local mode = args[1]
  for i = 2, #args do
    local context_id, path = string.match(args[i], "^([^@]+)@(.+)$")
    local file = assert(io.open(path, "rb"))
    local body = file:read("*a")
    file:close()
    local headers = {
      ["Host"] = wrk.headers["Host"],
      ["Content-Type"] = "application/json",
    }
    local base, context = string.match(mode, "^(%a+)(.*)$")
    assert(base == "header" or base == "body", "mode: header or body")
    assert(context == "" or context == "+context", "mode suffix: +context or none")
    if base == "header" then
      headers["x-context-id"] = context_id
    end
    if context == "+context" then
      headers["x-bench-context"] = context_id
    end
    count = count + 1
    requests[count] = wrk.format("POST", "/", headers, body)
  end
  assert(count > 0, "no bodies given")
end

function request()
  next_index = next_index % count + 1
  return requests[next_index]
end

-- One JSON line the driver parses (latencies in microseconds).
function done(summary, latency, requests_)
  local e = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
