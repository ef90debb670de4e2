-- wrk script for the switchyard load benchmark.
--
-- Every request is a POST of a small KServe v2 inference body to
-- /v2/models/m/infer (the path is taken from the URL on wrk's command line).
--
-- WRK_STICKY=1: each request also carries `x-user-id`, cycling through a pool
-- of 10 000 ids. The requests are formatted once in init(), so request() only
-- returns a prebuilt string and wrk's own CPU cost stays low.
--
-- WRK_BODY_FILE=PATH: the body is that file's contents instead (the large-tensor rows).
--
-- WRK_DELAY_MS=N: each connection waits N ms after each answer before its next request
-- (an offered rate of about CONNECTIONS x 1000 / (N + latency) per second, below
-- saturation), for the paced rows.
--
-- done() prints one machine-readable line (read by run.sh and soak.sh):
--   RESULT requests=N duration_us=N errors=N rps=N p50_us=N p99_us=N

wrk.method = "POST"
wrk.body = '{"inputs":[{"name":"x","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}'
wrk.headers["Content-Type"] = "application/json"

local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

if os.getenv("WRK_STICKY") == "1" then
  local pool_size = 10000
  local pool = {}
  local next_user = 0

  function init(args)
    for i = 1, pool_size do
      local headers = { ["x-user-id"] = "user-" .. i }
      pool[i] = wrk.format(nil, nil, headers)
    end
  end

  function request()
    next_user = next_user % pool_size + 1
    return pool[next_user]
  end
end

local pause_ms = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pause_ms and pause_ms > 0 then
  function delay()
    return pause_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + e.status
  local seconds = summary.duration / 1e6
  io.write(string.format(
    "RESULT requests=%d duration_us=%d errors=%d rps=%.1f p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, errors, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99)))
end
