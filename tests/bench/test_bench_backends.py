#!/usr/bin/python3
"""Checks the stand-ins bench_overhead.sh measures against, so its figures
compare like with like:

  * bench_model_server (gRPC C++) answers every Predict and
    GetModelMetadata below exactly as tests/interop/model_server.py
    (grpcio) does: the same status code, and on success the same response
    (model_spec, logits dtype, shape and bytes; the signature_def). The
    Predicts cover both dtypes, both value encodings (tensor_content,
    int_val/int64_val), values that wrap int64 sums, and each way a request
    can be wrong.
  * python_proxy.py and flask_proxy.py, pointed at bench_model_server,
    answer the benchmark's BERT body with the right predictions.

Usage: /usr/bin/python3 test_bench_backends.py BENCH_MODEL_SERVER
Every process it starts listens on 127.0.0.1 port 0, reports its port in a
file, is polled with a deadline, and is stopped at the end (and with
--exit-with-parent, if this script dies). Exit status 0 when all checks pass.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pyproxy_lib  # noqa: E402

PY = "/usr/bin/python3"
MODEL_SERVER = os.path.join(HERE, "..", "interop", "model_server.py")
DEADLINE_S = 60


def wait_for(path, proc):
    """The JSON in path once it exists; fails if proc exits or time runs out."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args[1], proc.returncode))
        time.sleep(0.05)
    raise RuntimeError("%s did not start within %d s" % (proc.args[1], DEADLINE_S))


def requests(predict_pb2):
    """(label, PredictRequest) pairs: the cases both servers must agree on."""
    import numpy as np
    DT_FLOAT, DT_INT32, DT_INT64 = 1, 3, 9

    def req(ids=None, dtype=DT_INT32, shape=(1, 500), name="bert", encoding="content",
            input_name="input_ids"):
        r = predict_pb2.PredictRequest()
        r.model_spec.name = name
        if ids is None:
            ids = np.arange(101, 601)
        t = r.inputs[input_name]
        t.dtype = dtype
        for d in shape:
            t.tensor_shape.dim.add().size = d
        np_type = {DT_INT64: "<i8", DT_FLOAT: "<f4"}.get(dtype, "<i4")
        a = np.asarray(ids).astype(np_type)
        if encoding == "content":
            t.tensor_content = a.tobytes()
        elif dtype == DT_INT64:
            t.int64_val.extend(int(v) for v in a)
        elif dtype == DT_FLOAT:
            t.float_val.extend(float(v) for v in a)
        else:
            t.int_val.extend(int(v) for v in a)
        return r

    rng = np.random.default_rng(4)
    i32 = np.iinfo(np.int32)
    i64 = np.iinfo(np.int64)
    cases = [
        ("int32 tensor_content", req()),
        ("int32 int_val", req(encoding="vals")),
        ("int64 tensor_content", req(dtype=DT_INT64)),
        ("int64 int64_val", req(dtype=DT_INT64, encoding="vals")),
        ("int32 random", req(rng.integers(i32.min, i32.max, 500, endpoint=True))),
        ("int32 extremes", req([i32.min, i32.max] * 250)),
        ("int64 wrapping sum and span", req([i64.min, i64.max] * 250, dtype=DT_INT64)),
        ("int64 random", req(rng.integers(-2**40, 2**40, 500), dtype=DT_INT64, encoding="vals")),
    ]
    r = req()
    r.model_spec.version.value = 1
    cases.append(("version 1", r))
    r = req()
    r.model_spec.version.value = 0
    cases.append(("version 0", r))
    r = req()
    r.model_spec.version.value = 2
    cases.append(("version 2", r))
    r = req()
    r.model_spec.version_label = "stable"
    cases.append(("version label", r))
    r = req()
    r.model_spec.signature_name = "serving_default"
    cases.append(("signature serving_default", r))
    r = req()
    r.model_spec.signature_name = "other"
    cases.append(("signature other", r))
    r = req()
    r.output_filter.append("logits")
    cases.append(("output filter logits", r))
    r = req()
    r.output_filter.append("nope")
    cases.append(("output filter nope", r))
    r = req()
    r.inputs["extra"].CopyFrom(r.inputs["input_ids"])
    cases.append(("two inputs", r))
    r = req()
    r.inputs["input_ids"].tensor_shape.unknown_rank = True
    cases.append(("unknown rank", r))
    r = req()
    r.inputs["input_ids"].tensor_content = r.inputs["input_ids"].tensor_content[:-1]
    cases.append(("content one byte short", r))
    cases += [
        ("unknown model", req(name="nope")),
        ("empty model name", req(name="")),
        ("input name", req(input_name="ids")),
        ("float32", req(dtype=DT_FLOAT)),
        ("float32 float_val", req(dtype=DT_FLOAT, encoding="vals")),
        ("bool dtype", req(dtype=10, encoding="vals")),
        ("shape [500]", req(shape=(500,))),
        ("shape [1, 499]", req(np.arange(499), shape=(1, 499))),
        ("shape [1, 500] with 499 int_val", req(np.arange(499), encoding="vals")),
        ("shape [2, 250]", req(shape=(2, 250))),
        ("shape [1, -500]", req(shape=(1, -500))),
        ("no inputs", predict_pb2.PredictRequest(model_spec={"name": "bert"})),
    ]
    return cases


def metadata_requests(meta_pb2):
    """(label, GetModelMetadataRequest) pairs: kvc's proxy asks for signature_def."""
    def req(name="bert", fields=("signature_def",)):
        r = meta_pb2.GetModelMetadataRequest()
        r.model_spec.name = name
        r.metadata_field.extend(fields)
        return r

    r = req()
    r.model_spec.version.value = 2
    return [
        ("metadata signature_def", req()),
        ("metadata unknown model", req(name="nope")),
        ("metadata version 2", r),
        ("metadata no field", req(fields=())),
        ("metadata other field", req(fields=("nope",))),
        ("metadata two fields", req(fields=("signature_def", "signature_def"))),
    ]


def call(method, r):
    import grpc
    try:
        return "OK", method(r, timeout=10)
    except grpc.RpcError as e:
        return e.code().name, None


def post(port, body):
    req = urllib.request.Request("http://127.0.0.1:%d/v1/models/bert:predict" % port,
                                 data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.status, json.loads(resp.read())


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    cxx = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="kvc-test-bench-backends-")
    procs = []

    def start(argv, name):
        log = open(os.path.join(tmp, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    failures = []
    try:
        pc = start([cxx, "--port-file", os.path.join(tmp, "cxx.json"), "--exit-with-parent"],
                   "cxx")
        pp = start([PY, MODEL_SERVER, "--grpc-port", "0", "--rest-port", "0", "--port-file",
                    os.path.join(tmp, "py.json"), "--exit-with-parent"], "py")
        cxx_port = wait_for(os.path.join(tmp, "cxx.json"), pc)["grpc"]
        proxies = {}
        for name in ("python_proxy", "flask_proxy"):
            proxies[name] = start([PY, os.path.join(HERE, name + ".py"), "--grpc",
                                   "127.0.0.1:%d" % cxx_port, "--port-file",
                                   os.path.join(tmp, name + ".json"), "--exit-with-parent"], name)
        py_port = wait_for(os.path.join(tmp, "py.json"), pp)["grpc"]

        pyproxy_lib.generate(tmp)
        import grpc
        from tensorflow_serving.apis import (get_model_metadata_pb2, predict_pb2,
                                             prediction_service_pb2_grpc)
        stubs = {}
        for name, port in (("cxx", cxx_port), ("py", py_port)):
            ch = grpc.insecure_channel("127.0.0.1:%d" % port)
            stubs[name] = prediction_service_pb2_grpc.PredictionServiceStub(ch)

        cases = [(label, "Predict", r) for label, r in requests(predict_pb2)]
        cases += [(label, "GetModelMetadata", r)
                  for label, r in metadata_requests(get_model_metadata_pb2)]
        def unpacked(resp):
            """A metadata answer with its Any values opened (compared as messages,
            not as bytes); other answers as they are."""
            if not isinstance(resp, get_model_metadata_pb2.GetModelMetadataResponse):
                return resp
            out = {"model_spec": resp.model_spec}
            for k, v in resp.metadata.items():
                m = get_model_metadata_pb2.SignatureDefMap()
                out[k] = (v.type_url, m if v.Unpack(m) else None)
            return out

        for label, method, r in cases:
            want_code, want = call(getattr(stubs["py"], method), r)
            got_code, got = call(getattr(stubs["cxx"], method), r)
            want, got = unpacked(want), unpacked(got)
            if got_code != want_code or got != want:
                failures.append("%s: model_server.py %s %s, bench_model_server %s %s"
                                % (label, want_code, want, got_code, got))
            else:
                print("ok   %-36s %s" % (label, want_code))

        body = json.dumps({"instances": [list(range(101, 601))]}).encode()
        for name, p in proxies.items():
            port = wait_for(os.path.join(tmp, name + ".json"), p)["port"]
            status, doc = post(port, body)
            if status != 200 or doc != {"predictions": [[175.25, 499.0]]}:
                failures.append("%s: %s %s" % (name, status, doc))
            else:
                print("ok   %-36s %s" % (name + " BERT body", status))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if procs and procs[0].returncode not in (0, None):
            failures.append("bench_model_server exited with %s" % procs[0].returncode)
        if failures:
            for name in ("cxx", "py", "python_proxy", "flask_proxy"):
                path = os.path.join(tmp, name + ".log")
                if os.path.exists(path):
                    with open(path) as f:
                        tail = f.read()[-2000:]
                    if tail:
                        print("--- %s.log\n%s" % (name, tail), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    for f in failures:
        print("FAIL " + f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
