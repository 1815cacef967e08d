import http.client, json, sys, time, statistics
host, port = sys.argv[1].split(':'); path = sys.argv[2]; n = int(sys.argv[3])
hdrs = {"Content-Type": "application/json"}
if len(sys.argv) > 4 and sys.argv[4]: hdrs["Kvc-Constraint"] = sys.argv[4]
body = open(sys.argv[5]).read() if len(sys.argv) > 5 else '{"instances":[[1]]}'
c = http.client.HTTPConnection(host, int(port))
lat = []; by = {}
for i in range(n + 200):
    t = time.perf_counter_ns()
    c.request("POST", path, body, hdrs)
    r = c.getresponse(); r.read()
    d = (time.perf_counter_ns() - t) / 1000
    if r.status != 200: print("status", r.status, file=sys.stderr); sys.exit(1)
    if i >= 200: lat.append(d); s = r.getheader("Kvc-Served-By"); by[s] = by.get(s, 0) + 1
lat.sort()
print(json.dumps({"p50_us": lat[len(lat)//2], "p99_us": lat[int(len(lat)*0.99)], "n": n, "served_by": by}))
