"""What the Python baseline proxies of tests/bench/bench_overhead.sh share:
python_proxy.py (http.server) and flask_proxy.py (Flask) differ only in the
HTTP server, so the JSON <-> Predict work, the stubs and the command line
live here once.

  * generate(): grpcio stubs for TF Serving's PredictionService, compiled at
    start with grpc_tools into a temporary directory (as
    tests/interop/model_server.py does); never written into the tree.
  * Backend.predict(): the hand-written shortcut a user's proxy takes: a
    TF Serving REST document with "instances" or "inputs" holding one
    unnamed tensor, integer values as int32 and others as float32 (numpy),
    one Predict call through grpcio, the outputs back as JSON-ready lists.
  * arg_parser() and run(): the shared command line, the port file
    ({"port": P, "pid": N}, written atomically once the server listens),
    and the stop rules (SIGTERM/SIGINT, or the parent's death with
    --exit-with-parent).

Imported with /usr/bin/python3 (Debian's grpcio, grpc_tools, numpy).
"""

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading

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
DT_FLOAT, DT_INT32 = 1, 3


def generate(out_dir):
    """Compiles the TF Serving protos to Python in out_dir and makes them importable."""
    from grpc_tools import protoc
    import grpc_tools
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", "-I" + PROTO_DIR, "-I" + wkt, "--python_out=" + out_dir,
            "--grpc_python_out=" + out_dir] + PROTOS
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed")
    sys.path.insert(0, out_dir)


class Backend:
    """One grpcio channel to the model server and the Predict conversion."""

    def __init__(self, target, input_name):
        import grpc
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
        self.pb = predict_pb2
        self.channel = grpc.insecure_channel(target)
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.input_name = input_name

    def predict(self, model, doc):
        """doc: the parsed JSON body. Returns (HTTP status, JSON-ready object);
        any failure is a 400 with the error's text, as a user's proxy does."""
        try:
            row = "instances" in doc
            x = np.asarray(doc["instances"] if row else doc["inputs"])
            x = x.astype(np.int32 if x.dtype.kind in "iu" else np.float32)
            req = self.pb.PredictRequest()
            req.model_spec.name = model
            t = req.inputs[self.input_name]
            t.dtype = DT_INT32 if x.dtype == np.int32 else DT_FLOAT
            for d in x.shape:
                t.tensor_shape.dim.add().size = d
            t.tensor_content = x.tobytes()
            resp = self.stub.Predict(req, timeout=10)
        except Exception as e:  # a user's proxy answers 400 and moves on
            return 400, {"error": str(e)}
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
        return 200, {"predictions" if row else "outputs": out}

    def close(self):
        self.channel.close()


def arg_parser(description):
    """The command line both proxies take."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--grpc", required=True, help="HOST:PORT of the model server's gRPC")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--input", default="input_ids", help="the model's input tensor name")
    ap.add_argument("--exit-with-parent", action="store_true")
    return ap


def run(args, start):
    """Generates the stubs, calls start(backend) -> (port, stop_fn) to start
    the HTTP server in the background, writes the port file, and waits for
    SIGTERM/SIGINT (or the parent's death) before stop_fn(). Returns 0."""
    gen = tempfile.mkdtemp(prefix="kvc-python-proxy-")
    try:
        generate(gen)
        backend = Backend(args.grpc, args.input)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        port, stop_server = start(backend)
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"port": port, "pid": os.getpid()}, f)
        os.rename(tmp, args.port_file)
        parent = os.getppid()
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break
        stop_server()
        backend.close()
    finally:
        shutil.rmtree(gen, ignore_errors=True)
    return 0
