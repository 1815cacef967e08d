#!/usr/bin/python3
"""Open-loop constant-rate HTTP client for the failover tests (stdlib only).

run:     rate_client.py --url URL --rate N (--duration S | --stop-file F)
         [--body B | --body-file F] [--header K:V]... [--timeout-ms MS]
         --out FILE.jsonl
  Sends request i at start + i/N seconds whatever the earlier ones did (a
  pool of worker threads large enough for rate x timeout); one JSON line
  per request: t_ms (send time since start), latency_ms, status (0 = no
  answer), served_by, route.
summary: rate_client.py summary FILE.jsonl T0:T1 [T0:T1]...
  Per window [t0,t1) ms of send time: count, non200, p50_ms, p99_ms and
  served_by counts, as one JSON object {"T0:T1": {...}}.
"""
import argparse, http.client, json, os, queue, sys, threading, time
from urllib.parse import urlsplit


def pct(vals, p):
    if not vals:
        return None
    v = sorted(vals)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return round(v[k], 3)


def summary(argv):
    rows = [json.loads(l) for l in open(argv[0]) if l.strip()]
    out = {}
    for w in argv[1:]:
        t0, t1 = (float(x) for x in w.split(":"))
        sel = [r for r in rows if t0 <= r["t_ms"] < t1]
        by = {}
        for r in sel:
            by[r["served_by"]] = by.get(r["served_by"], 0) + 1
        out[w] = {"count": len(sel), "non200": sum(1 for r in sel if r["status"] != 200),
                  "p50_ms": pct([r["latency_ms"] for r in sel], 50),
                  "p99_ms": pct([r["latency_ms"] for r in sel], 99), "served_by": by}
    print(json.dumps(out))


def run(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, required=True)
    ap.add_argument("--duration", type=float, default=0)
    ap.add_argument("--stop-file")
    ap.add_argument("--body")
    ap.add_argument("--body-file")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    if not a.duration and not a.stop_file:
        ap.error("--duration or --stop-file")
    body = a.body.encode() if a.body is not None else (
        open(a.body_file, "rb").read() if a.body_file else None)
    u = urlsplit(a.url)
    path = u.path + ("?" + u.query if u.query else "")
    hdrs = {"Content-Type": "application/json"}
    for h in a.header:
        k, _, v = h.partition(":")
        hdrs[k.strip()] = v.strip()
    method = "POST" if body is not None else "GET"
    timeout = a.timeout_ms / 1000.0
    jobs = queue.Queue()
    outq = queue.Queue()
    local = threading.local()

    def conn():
        c = getattr(local, "c", None)
        if c is None:
            c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
            local.c = c
        return c

    def worker():
        while True:
            t_ms = jobs.get()
            if t_ms is None:
                return
            t0 = time.monotonic()
            st, sb, rt = 0, "", ""
            for attempt in (0, 1):
                try:
                    c = conn()
                    c.request(method, path, body=body, headers=hdrs)
                    r = c.getresponse()
                    r.read()
                    st, sb, rt = r.status, r.getheader("Kvc-Served-By", ""), r.getheader("Kvc-Route", "")
                    if (r.getheader("Connection", "") or "").lower() == "close":
                        c.close(); local.c = None
                    break
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                    # a kept-alive connection the server closed while idle:
                    # one retry on a fresh one, only if it was a reused one
                    reused = getattr(local, "used", False)
                    try: local.c.close()
                    except Exception: pass
                    local.c = None; local.used = False
                    if attempt == 0 and reused:
                        continue
                    sb = "error:" + type(e).__name__
                    break
                except Exception as e:
                    try: local.c.close()
                    except Exception: pass
                    local.c = None; local.used = False
                    sb = "error:" + type(e).__name__
                    break
            local.used = local.c is not None
            outq.put({"t_ms": t_ms, "latency_ms": round((time.monotonic() - t0) * 1000, 3),
                      "status": st, "served_by": sb, "route": rt})

    nthreads = max(8, min(512, int(a.rate * (timeout + 0.05)) + 8))
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(nthreads)]
    for t in threads:
        t.start()
    f = open(a.out, "w")
    done = threading.Event()

    def writer():
        while True:
            r = outq.get()
            if r is None:
                break
            f.write(json.dumps(r) + "\n")
            f.flush()
        done.set()

    wt = threading.Thread(target=writer, daemon=True)
    wt.start()
    start = time.monotonic()
    i = 0
    while True:
        due = start + i / a.rate
        if a.duration and due - start >= a.duration:
            break
        if a.stop_file and os.path.exists(a.stop_file):
            break
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        jobs.put(round((time.monotonic() - start) * 1000, 3))
        i += 1
    for _ in threads:
        jobs.put(None)
    for t in threads:
        t.join(timeout + 1)
    outq.put(None)
    done.wait(5)
    f.close()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "summary":
        summary(sys.argv[2:])
    else:
        sys.exit(run(sys.argv[1:]))
