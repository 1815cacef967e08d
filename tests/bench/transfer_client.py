#!/usr/bin/python3
"""Client and report for tests/bench/bench_transfer.sh (standard library + numpy).

  transfer_client.py gen MODEL OUT
      Writes the TF Serving REST JSON body a typical Python client sends for
      MODEL: {"instances": x.tolist()} through json.dumps, where x is float32
      uniform in [0, 1) from a fixed seed (int token ids for bert, bytes for
      the *_u8 models that take a uint8 image). tolist()
      turns float32 into Python floats, so values print in float64's shortest
      form (~18 digits): that is what users' scripts put on the wire.

  transfer_client.py run --label L --url URL --body FILE --ctype TYPE
                         --dev VETH [--runs 10] [--warmup 2] [--max-seconds 120]
      POSTs FILE to URL over one kept-alive http.client connection, checks
      HTTP 200 every time, and records per request the wall time and the bytes
      VETH sent and received (its /sys statistics counters, read in the network
      namespace this runs in, before and after each request, so they include
      TCP/IP headers and ACKs). Stops after --runs timed requests or when
      --max-seconds have passed (at least one timed request). Prints one JSON
      line.

  transfer_client.py table RATE_BPS FILE
      Reads the JSON lines of `run` and prints the Markdown table.
"""

import http.client
import json
import sys
import time
import urllib.parse

SHAPES = {
    "mobilenet": (1, 224, 224, 3),
    "inception": (1, 299, 299, 3),
    "yolov5": (1, 640, 640, 3),
    "bert": (1, 500),
    "mobilenet_u8": (1, 224, 224, 3),
    "yolov5_u8": (1, 640, 640, 3),
}


def gen(model, out):
    import numpy as np
    rng = np.random.default_rng(20240604)
    shape = SHAPES[model]
    if model == "bert":
        x = rng.integers(0, 30522, size=shape, dtype=np.int64)
    elif model.endswith("_u8"):
        x = rng.integers(0, 256, size=shape, dtype=np.uint8)
    else:
        x = rng.random(size=shape, dtype=np.float32)
    with open(out, "w") as f:
        json.dump({"instances": x.tolist()}, f)


def counters(dev):
    base = "/sys/class/net/%s/statistics/" % dev
    with open(base + "tx_bytes") as f:
        tx = int(f.read())
    with open(base + "rx_bytes") as f:
        rx = int(f.read())
    return tx, rx


def run(argv):
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--ctype", required=True)
    ap.add_argument("--dev", required=True)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    a = ap.parse_args(argv)
    runs = max(1, min(a.runs, 1000))
    warmup = max(0, min(a.warmup, 100))
    with open(a.body, "rb") as f:
        body = f.read()
    u = urllib.parse.urlsplit(a.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    headers = {"Content-Type": a.ctype, "Content-Length": str(len(body))}
    lat, tx, rx, resp_len = [], [], [], 0
    deadline = time.monotonic() + a.max_seconds
    for i in range(warmup + runs):
        if i > warmup and time.monotonic() > deadline:
            break
        t0_tx, t0_rx = counters(a.dev)
        t0 = time.perf_counter()
        conn.request("POST", u.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        t1 = time.perf_counter()
        t1_tx, t1_rx = counters(a.dev)
        if r.status != 200:
            print("transfer_client: %s: HTTP %d: %s" % (a.label, r.status, data[:300]),
                  file=sys.stderr)
            return 1
        if i >= warmup:
            lat.append(t1 - t0)
            tx.append(t1_tx - t0_tx)
            rx.append(t1_rx - t0_rx)
            resp_len = len(data)
    conn.close()
    print(json.dumps({"label": a.label, "req_bytes": len(body), "resp_bytes": resp_len,
                      "lat": lat, "tx": tx, "rx": rx}))
    return 0


def table(rate_bps, path):
    import numpy as np
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                d = json.loads(line)
                rows[d["label"]] = d

    def stats(d):
        lat = np.array(d["lat"]) * 1000
        link = np.array(d["tx"]) + np.array(d["rx"])
        return (np.median(lat), np.percentile(lat, 90), float(np.median(link)),
                float(np.median(link)) * 8 / rate_bps * 1000, len(lat))

    print("| model | path | runs | body sent by client | bytes on the veth (both ways) "
          "| transfer ms (bytes / rate) | total ms p50 | total ms p90 | transfer vs A "
          "| total p50 vs A |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    names = {"A": "A: JSON to model server REST", "B": "B: JSON to kvc proxy (protobuf on link)",
             "C": "C: JPEG to kvc proxy (protobuf on link)"}
    for model in SHAPES:
        base = rows.get(model + "/A")
        for p in ("A", "B", "C"):
            d = rows.get(model + "/" + p)
            if not d:
                continue
            p50, p90, link, tms, n = stats(d)
            if base and p != "A":
                b50, _, blink, _, _ = stats(base)
                vt = "%.3f (%+.1f%%)" % (link / blink, (link / blink - 1) * 100)
                vl = "%.3f" % (p50 / b50)
            else:
                vt = vl = "-"
            print("| %s | %s | %d | %.3f MB | %.3f MB | %.1f | %.1f | %.1f | %s | %s |" % (
                model, names[p], n, d["req_bytes"] / 1e6, link / 1e6, tms, p50, p90, vt, vl))
    # A model taking a uint8 image against the float model's own paths: what
    # an operator gains by exporting the model with a uint8 input.
    lines = []
    for model in SHAPES:
        if not model.endswith("_u8"):
            continue
        d, fa, fb = rows.get(model + "/C"), rows.get(model[:-3] + "/A"), rows.get(model[:-3] + "/B")
        if not (d and fa and fb):
            continue
        _, _, link, _, _ = stats(d)
        _, _, alink, _, _ = stats(fa)
        _, _, blink, _, _ = stats(fb)
        lines.append("| %s | %s | %.3f MB | %.3f (%+.1f%%) | %.3f (%+.1f%%) |" % (
            model[:-3], names["C"].replace("protobuf", "uint8 protobuf"), link / 1e6,
            link / alink, (link / alink - 1) * 100, link / blink, (link / blink - 1) * 100))
    if lines:
        print()
        print("| model | path | bytes on the veth | transfer vs the float model's A "
              "| transfer vs the float model's B |")
        print("|---|---|---|---|---|")
        print("\n".join(lines))
    return 0


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "gen":
        gen(sys.argv[2], sys.argv[3])
        return 0
    if len(sys.argv) >= 2 and sys.argv[1] == "run":
        return run(sys.argv[2:])
    if len(sys.argv) == 4 and sys.argv[1] == "table":
        return table(float(sys.argv[2]), sys.argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
