-- wrk script of tests/bench/bench_overhead.sh: POSTs the JSON file named by
-- the environment variable KVCB_BODY to the URL wrk was given, and counts
-- answers other than 200 (wrk reports them as "Non-2xx or 3xx responses").
local f = assert(io.open(os.getenv("KVCB_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
