#!/usr/bin/python3
"""Open-loop constant-rate HTTP client for the failover tests (stdlib only).

run:     rate_client.py --url URL --rate N (--duration S | --stop-file F)
         [--body B | --body-file F] [--header K:V]... [--timeout-ms MS]
         [--t0-file F] --out FILE.jsonl
  Sends request i at start + i/N seconds whatever the earlier ones did (a
  pool of worker threads large enough for rate x timeout); one JSON line
  per request: t_ms (send time since start), latency_ms, status (0 = no
  answer), served_by, route. --t0-file F: F gets the start as wall-clock
  Unix milliseconds (written before the first request), so a test can put
  its own events (date +%s%N) on the same time line as t_ms.
summary: rate_client.py summary FILE.jsonl T0:T1 [T0:T1]...
  Per window [t0,t1) ms of send time: count, non200, p50_ms, p99_ms,
  served_by and route counts, as one JSON object {"T0:T1": {...}}.
failover: rate_client.py failover FILE.jsonl --home SITE --kill-ms K
          --back-ms R [--restart-ms S] [--from-ms F]
  A run that lost its home site's backend at client time K (ms, as t_ms),
  started it again at S (default R) and had it serving at R: one JSON
  object with
    failover_ms  first answer sent at or after K not served locally by
                 SITE, minus K (null: none)
    failback_ms  send time from which every answer is local at SITE again,
                 minus R (null: the run never got there)
    before [F,K), during [K,S), after [R+failback_ms, end): count, non200,
                 p50_ms, p99_ms, served_by and route counts
    non200       over the whole run (t_ms >= F)
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
        out[w] = window([r for r in rows if t0 <= r["t_ms"] < t1])
    print(json.dumps(out))


def window(sel):
    by, rt = {}, {}
    for r in sel:
        by[r["served_by"]] = by.get(r["served_by"], 0) + 1
        rt[r["route"]] = rt.get(r["route"], 0) + 1
    lat = [r["latency_ms"] for r in sel]
    return {"count": len(sel), "non200": sum(1 for r in sel if r["status"] != 200),
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "served_by": by, "route": rt}


def failover(argv):
    ap = argparse.ArgumentParser(prog="rate_client.py failover")
    ap.add_argument("file")
    ap.add_argument("--home", required=True)
    ap.add_argument("--kill-ms", type=float, required=True)
    ap.add_argument("--back-ms", type=float, required=True)
    ap.add_argument("--restart-ms", type=float)
    ap.add_argument("--from-ms", type=float, default=0)
    a = ap.parse_args(argv)
    if a.restart_ms is None:
        a.restart_ms = a.back_ms
    rows = sorted((json.loads(l) for l in open(a.file) if l.strip()), key=lambda r: r["t_ms"])
    rows = [r for r in rows if r["t_ms"] >= a.from_ms]

    def home(r):
        return r["status"] == 200 and r["served_by"] == a.home and r["route"] == "local"

    first = next((r for r in rows if r["t_ms"] >= a.kill_ms and not home(r)), None)
    # the earliest send time at or after R from which every answer is home
    back = None
    for r in reversed(rows):
        if r["t_ms"] < a.back_ms or not home(r):
            break
        back = r["t_ms"]
    out = {"failover_ms": round(first["t_ms"] - a.kill_ms, 3) if first else None,
           "failback_ms": round(back - a.back_ms, 3) if back is not None else None,
           "before": window([r for r in rows if r["t_ms"] < a.kill_ms]),
           "during": window([r for r in rows if a.kill_ms <= r["t_ms"] < a.restart_ms]),
           "after": window([r for r in rows if back is not None and r["t_ms"] >= back]),
           "non200": sum(1 for r in rows if r["status"] != 200), "count": len(rows)}
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
    ap.add_argument("--t0-file")
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
    if a.t0_file:
        wall0 = time.time() - (time.monotonic() - start)
        with open(a.t0_file + ".tmp", "w") as tf:
            tf.write("%.3f\n" % (wall0 * 1000))
        os.rename(a.t0_file + ".tmp", a.t0_file)
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
    elif len(sys.argv) > 1 and sys.argv[1] == "failover":
        failover(sys.argv[2:])
    else:
        sys.exit(run(sys.argv[1:]))
