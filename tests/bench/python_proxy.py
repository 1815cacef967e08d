#!/usr/bin/python3
"""The inference proxy a user would otherwise write: the baseline of
tests/bench/bench_overhead.sh (issue 4: kvc's proxy should serve at least
10x its requests per second).

Standard library HTTP (ThreadingHTTPServer, HTTP/1.1 keep-alive, Nagle off),
`json` to parse TF Serving REST bodies, numpy to make the tensor, grpcio's
generated stubs (compiled at start with grpc_tools into a temporary
directory, as tests/interop/model_server.py does) for the Predict call, and
`json` again for the answer. It handles POST /v1/models/NAME:predict with
"instances" or "inputs" holding one unnamed tensor, integer values as int32
and others as float32 -- the usual hand-written shortcut -- and nothing else.

Usage: /usr/bin/python3 python_proxy.py --grpc HOST:PORT [--host 127.0.0.1]
           [--port 0] --port-file FILE [--input input_ids] [--exit-with-parent]
FILE gets {"port": P, "pid": N} once it listens. SIGTERM stops it.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))
PROTOS = [
    "tensorflow/core/framework/types.proto",
    "tensorflow/core/framework/tensor_shape.proto",
    "tensorflow/core/framework/tensor.proto",
    "tensorflow_serving/apis/model.proto",
    "tensorflow_serving/apis/predict.proto",
    "tensorflow_serving/apis/get_model_metadata.proto",
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow/core/protobuf/meta_graph.proto",
]
PATH = re.compile(r"^/v1/models/([A-Za-z0-9_.-]+):predict$")


def generate(out_dir):
    from grpc_tools import protoc
    import grpc_tools
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", "-I" + PROTO_DIR, "-I" + wkt, "--python_out=" + out_dir,
            "--grpc_python_out=" + out_dir] + PROTOS
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed")
    sys.path.insert(0, out_dir)


def make_handler(stub, pb, tpb, input_name):
    DT_FLOAT, DT_INT32 = 1, 3

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):
            pass

        def _send(self, code, obj):
            data = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            m = PATH.match(self.path)
            if not m:
                return self._send(404, {"error": "not found"})
            try:
                doc = json.loads(raw)
                row = "instances" in doc
                x = np.asarray(doc["instances"] if row else doc["inputs"])
                x = x.astype(np.int32 if x.dtype.kind in "iu" else np.float32)
                req = pb.PredictRequest()
                req.model_spec.name = m.group(1)
                t = req.inputs[input_name]
                t.dtype = DT_INT32 if x.dtype == np.int32 else DT_FLOAT
                for d in x.shape:
                    t.tensor_shape.dim.add().size = d
                t.tensor_content = x.tobytes()
                resp = stub.Predict(req, timeout=10)
            except Exception as e:  # a user's proxy answers 400 and moves on
                return self._send(400, {"error": str(e)})
            out = {}
            for name, tp in resp.outputs.items():
                shape = [d.size for d in tp.tensor_shape.dim]
                if tp.tensor_content:
                    a = np.frombuffer(tp.tensor_content, dtype=np.float32).reshape(shape)
                else:
                    a = np.asarray(tp.float_val, dtype=np.float32).reshape(shape)
                out[name] = a.tolist()
            if len(out) == 1:
                (only,) = out.values()
                out = only
            self._send(200, {"predictions" if row else "outputs": out})

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grpc", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--input", default="input_ids")
    ap.add_argument("--exit-with-parent", action="store_true")
    args = ap.parse_args()
    gen = tempfile.mkdtemp(prefix="kvc-python-proxy-")
    try:
        generate(gen)
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        from tensorflow.core.framework import tensor_pb2
        channel = grpc.insecure_channel(args.grpc)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        ThreadingHTTPServer.daemon_threads = True
        httpd = ThreadingHTTPServer((args.host, args.port),
                                    make_handler(stub, predict_pb2, tensor_pb2, args.input))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"port": httpd.server_address[1], "pid": os.getpid()}, f)
        os.rename(tmp, args.port_file)
        parent = os.getppid()
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break
        httpd.shutdown()
        httpd.server_close()
        channel.close()
    finally:
        shutil.rmtree(gen, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
