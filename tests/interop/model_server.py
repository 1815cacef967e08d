#!/usr/bin/python3
"""A stand-in model server for tests, benchmarks and the demo.

It speaks the real wire protocols of the servers kvc talks to:
  * gRPC TF Serving: tensorflow.serving.PredictionService/{Predict,GetModelMetadata}
    and tensorflow.serving.ModelService/GetModelStatus;
  * gRPC KServe v2: inference.GRPCInferenceService/{ServerLive,ServerReady,
    ModelReady,ServerMetadata,ModelMetadata,ModelInfer}, with typed contents or
    raw_input_contents (answered with raw_output_contents);
  * TF Serving REST JSON on a second port: POST /v1/models/NAME[/versions/1]:predict
    ("instances" or "inputs"), GET /v1/models/NAME[/versions/1], GET .../metadata.

The "models" are deterministic numpy formulas with the tensor shapes of the
original experiment, so a test can compute every expected number itself.
All arithmetic is float64 in the order written, then cast to float32
(yolov5 also hashes, in wrapping uint64 arithmetic).

  mobilenet  images  float32 [1,224,224,3] -> scores  float32 [1,1001]
             m = mean(images) (float64); p = images[0,0,0,:] (first pixel)
             scores[0,j] = m * (j + 1) / 1001 + p[j % 3]
  inception  images  float32 [1,299,299,3] -> scores  float32 [1,1001]
             scores[0,j] = m * (1001 - j) / 1001 - p[j % 3]
  yolov5     images  float32 [1,640,640,3] -> output0 float32 [1,25200,85]
             values with a detector head's magnitudes, because the size of
             the REST answer depends on them: short ones (m + k + (i % 80) / 8)
             made it 54.3 MiB for the transfer bench's input, these make it
             62.2 MiB, near the 63.593 MiB TF Serving sent for a real YOLOv5
             in the original experiment. Not a trained model: the values are
             hashed, only their ranges and spread are a detector's.
             Rows are YOLOv5's: 3 scales (stride s = 8, 16, 32; side n = 640/s)
             of 3 anchors x n x n cells; row i -> scale, anchor a, cell (gx, gy)
             with i - first row of the scale = a*n*n + gy*n + gx; anchors (w,h)
             10,13 16,30 33,23 | 30,61 62,45 59,119 | 116,90 156,198 373,326.
             Per value, a hash (uint64 arithmetic, wrapping):
               z[i,k] = mix(((i*85 + k) * G + bits(m)) mod 2^64),
               u[i,k] = (z >> 11) * 2^-53 in [0, 1),
             bits(m): the IEEE bits of the float64 mean; G = 0x9E3779B97F4A7C15;
             mix: splitmix64's finaliser (z ^= z>>30; z *= 0xBF58476D1CE4E5B9;
             z ^= z>>27; z *= 0x94D049BB133111EB; z ^= z>>31). Then
               k=0  (gx + 2*u - 0.5) * s        box centre x, pixels
               k=1  (gy + 2*u - 0.5) * s        box centre y
               k=2  (0.5 + u) * (0.5 + u) * anchor w     box width, pixels
               k=3  (0.5 + u) * (0.5 + u) * anchor h     box height
               k>=4 ldexp(1 + u, -(7 + (z & 2047) % 13))  objectness and 80
                    class scores, roughly log-uniform in [2^-19, 2^-6), i.e.
                    [1.9e-6, 0.016): sigmoid(logit) ~ exp(logit) for the
                    very negative logits of background cells;
             and about 1 row in 256, those with (z[i,4] >> 4) & 255 == 0, holds
             an object: output0[0,i,4] = 0.5 + 0.5*u[i,4] and, for class
             c = 5 + (z[i,4] >> 12) % 80, output0[0,i,c] = 0.25 + 0.75*u[i,c].
             Only + - * / and ldexp, each exactly rounded, so C recomputes it
             bit for bit (tests/interop/yolo_expect.h).
  mobilenet_u8, yolov5_u8
             the same models exported with a uint8 image input, normalising
             in the graph as TF's Object Detection API exports detectors
             (images uint8 [1,H,W,3]): x = float32(images) / float32(255),
             one correctly rounded float32 division per value, then the float
             model above on x. A proxy that decodes an image can send these
             a quarter of the bytes.
  bert       input_ids int32|int64 [1,500] -> logits float32 [1,2]
             logits[0,0] = sum(ids) / 1000   (sum exact in int64)
             logits[0,1] = max(ids) - min(ids)
  hollow     bert's signature, but its TF Serving Predict answers OK with no
             outputs at all, as a broken model server might
  opaque     bert taking int32 only, from a server that gives no metadata for
             it: GetModelMetadata and ModelMetadata answer UNIMPLEMENTED, as
             servers without a metadata API do; a client that guesses int64
             for integers is refused (INVALID_ARGUMENT)
  opaque_sig opaque, but its one signature is named "classify": a TF Serving
             Predict naming no signature (or "serving_default") is refused
             with INVALID_ARGUMENT, as TF Serving refuses a signature the
             model lacks, so a client must know the name without metadata

  echo       one input per dtype, any shape, any non-empty subset per request;
             each comes back unchanged as an output named NAME_out, except
             raw_bytes -> raw_out_bytes (TF Serving's REST writes an output
             whose name ends in "_bytes" as {"b64": ...}); an output filter
             (output_filter / outputs) keeps only the outputs it names:
               f32 DT_FLOAT/FP32    f64 DT_DOUBLE/FP64   f16 DT_HALF/FP16
               i8  DT_INT8/INT8     i16 DT_INT16/INT16   i32 DT_INT32/INT32
               i64 DT_INT64/INT64   u8  DT_UINT8/UINT8   u16 DT_UINT16/UINT16
               u32 DT_UINT32/UINT32 u64 DT_UINT64/UINT64 b   DT_BOOL/BOOL
               str DT_STRING/BYTES  raw_bytes DT_STRING/BYTES
             TF Serving answers in the typed *_val fields (half_val, int_val,
             uint32_val, ... string_val), not tensor_content, so a client's
             decoding of those is exercised; KServe answers raw_output_contents
             (bytes as they came) to raw inputs, typed contents otherwise (FP16
             only raw). echo is served over gRPC only, not over REST.

Every model has the single version 1 and signature "serving_default"
(opaque_sig: "classify").
Unknown model or version -> NOT_FOUND ("Servable not found for request:
Specific(M, V)"; a version given as 0 is version 0, as in TF Serving, not
the latest); wrong input name, shape or dtype -> INVALID_ARGUMENT. Version
labels (ModelSpec.version_label) are those given with --version-label
NAME=VERSION (none by default); any other label is TF Serving's
INVALID_ARGUMENT "Unrecognized servable version label: NAME". --delay-ms N makes every Predict/ModelInfer (and REST
predict) wait N ms first, for deadline tests.

The REST port also serves GET /monitoring/prometheus/metrics as TF Serving
does: :tensorflow:serving:request_count{model_name,status} (counter) and
:tensorflow:serving:request_latency{model_name,API,entrypoint} (histogram in
microseconds, TF Serving's buckets 10 * 1.8^i), counting every Predict and
ModelInfer over gRPC and every REST predict it answered, with its status
(OK or the error code; CANCELLED for a gRPC call its caller cancelled, or
whose deadline passed, before the answer went out). --metrics-off answers that path with 404.

Usage: /usr/bin/python3 model_server.py --grpc-port 0 --rest-port 0 \
           --port-file FILE [--delay-ms N] [--max-message-mb 64] [--proto-dir DIR]
           [--exit-with-parent] [--metrics-off] [--tls-cert PEM --tls-key PEM]
           [--version-label NAME=VERSION ...] [--max-connection-age-ms N]
With --tls-cert and --tls-key (PEM files: the server's certificate chain and
its private key) the gRPC port speaks gRPC over TLS (h2 by ALPN) instead of
plain-text HTTP/2; REST stays plain HTTP.
Once both ports listen, FILE gets {"grpc": P, "rest": Q, "pid": N, "tls": 0|1},
written atomically (rename). SIGTERM or SIGINT stops both servers and exits 0.
Generated protobuf code lives in a temporary directory removed at exit.
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
import time
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "proto"))

PROTOS = [
    "tensorflow/core/framework/types.proto",
    "tensorflow/core/framework/tensor_shape.proto",
    "tensorflow/core/framework/tensor.proto",
    "tensorflow/core/protobuf/meta_graph.proto",
    "tensorflow/core/protobuf/error_codes.proto",
    "tensorflow_serving/util/status.proto",
    "tensorflow_serving/apis/model.proto",
    "tensorflow_serving/apis/predict.proto",
    "tensorflow_serving/apis/get_model_metadata.proto",
    "tensorflow_serving/apis/get_model_status.proto",
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "kserve/grpc_predict_v2.proto",
]


def generate_protos(proto_dir, out_dir):
    """Compiles our .proto files to Python in out_dir (grpc_tools, in-process).

    google/protobuf/*.proto in proto/ are local copies for protoc-c; Python uses
    the protobuf runtime's own modules of the same names, so they are not
    generated here (only read to resolve imports)."""
    from grpc_tools import protoc
    import grpc_tools
    wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    args = ["protoc", "-I" + proto_dir, "-I" + wkt,
            "--python_out=" + out_dir, "--grpc_python_out=" + out_dir] + PROTOS
    if protoc.main(args) != 0:
        raise RuntimeError("grpc_tools.protoc failed on " + proto_dir)
    sys.path.insert(0, out_dir)


class ModelError(Exception):
    """A request error with the gRPC status name it maps to."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code  # "NOT_FOUND", "INVALID_ARGUMENT", ...
        self.message = message


def _image_stats(x):
    x64 = x.astype(np.float64)
    return x64.mean(), x64[0, 0, 0, :]


def run_mobilenet(x):
    m, p = _image_stats(x)
    j = np.arange(1001, dtype=np.float64)
    return (m * (j + 1) / 1001 + p[(j % 3).astype(np.int64)]).astype(np.float32).reshape(1, 1001)


def run_inception(x):
    m, p = _image_stats(x)
    j = np.arange(1001, dtype=np.float64)
    return (m * (1001 - j) / 1001 - p[(j % 3).astype(np.int64)]).astype(np.float32).reshape(1, 1001)


# YOLOv5's rows: per scale (stride, first row) and its 3 anchors (w, h).
YOLO_SCALES = ((8, 0), (16, 19200), (32, 24000))
YOLO_ANCHORS = ((10, 13), (16, 30), (33, 23), (30, 61), (62, 45), (59, 119),
                (116, 90), (156, 198), (373, 326))
YOLO_G = np.uint64(0x9E3779B97F4A7C15)
YOLO_M1 = np.uint64(0xBF58476D1CE4E5B9)
YOLO_M2 = np.uint64(0x94D049BB133111EB)


def _yolo_rows():
    """Per row of output0: gx, gy, stride, anchor w, anchor h (float64)."""
    cols = [[] for _ in range(5)]
    for sc, (s, _) in enumerate(YOLO_SCALES):
        n = 640 // s
        a, gy, gx = np.meshgrid(np.arange(3), np.arange(n), np.arange(n), indexing="ij")
        anchors = np.array(YOLO_ANCHORS[3 * sc:3 * sc + 3], dtype=np.float64)[a.ravel()]
        for c, v in zip(cols, (gx.ravel(), gy.ravel(), np.full(a.size, s),
                               anchors[:, 0], anchors[:, 1])):
            c.append(np.asarray(v, dtype=np.float64))
    return [np.concatenate(c) for c in cols]


YOLO_ROWS = _yolo_rows()


def run_yolov5(x):
    """The detector-like output0 of the module docstring, in about 35 ms:
    whole-array numpy operations, in place where they can be (each 2.1M-value
    temporary costs page faults), no per-value Python."""
    m = x.astype(np.float64).mean()
    z = np.arange(25200 * 85, dtype=np.uint64)
    z *= YOLO_G
    z += np.array([m], dtype=np.float64).view(np.uint64)[0]
    t = z >> np.uint64(30)
    z ^= t
    z *= YOLO_M1
    np.right_shift(z, np.uint64(27), out=t)
    z ^= t
    z *= YOLO_M2
    np.right_shift(z, np.uint64(31), out=t)
    z ^= t
    z = z.reshape(25200, 85)
    t = t.reshape(25200, 85)
    np.right_shift(z, np.uint64(11), out=t)
    u = t.astype(np.float64)
    u *= 2.0 ** -53
    gx, gy, s, aw, ah = YOLO_ROWS
    out = np.empty((25200, 85), dtype=np.float64)
    out[:, 0] = (gx + 2 * u[:, 0] - 0.5) * s
    out[:, 1] = (gy + 2 * u[:, 1] - 0.5) * s
    out[:, 2] = (0.5 + u[:, 2]) * (0.5 + u[:, 2]) * aw
    out[:, 3] = (0.5 + u[:, 3]) * (0.5 + u[:, 3]) * ah
    e = t[:, 4:]  # t is free again: the scores' exponents go there
    np.bitwise_and(z[:, 4:], np.uint64(2047), out=e)
    e %= np.uint64(13)
    e += np.uint64(7)
    e = e.view(np.int64)
    np.negative(e, out=e)
    np.add(u[:, 4:], 1.0, out=out[:, 4:])
    np.ldexp(out[:, 4:], e, out=out[:, 4:])
    rows = np.nonzero(((z[:, 4] >> np.uint64(4)) & np.uint64(255)) == 0)[0]
    cls = (5 + (z[rows, 4] >> np.uint64(12)) % np.uint64(80)).astype(np.int64)
    out[rows, 4] = 0.5 + 0.5 * u[rows, 4]
    out[rows, cls] = 0.25 + 0.75 * u[rows, cls]
    return out.astype(np.float32).reshape(1, 25200, 85)


def run_bert(ids):
    ids = ids.astype(np.int64)
    s = float(ids.sum())
    return np.array([[s / 1000, float(ids.max() - ids.min())]], dtype=np.float32)


def _from_u8(fn):
    """A float image model behind an in-graph uint8 -> [0, 1] normalisation."""
    def run(x):
        return fn(x.astype(np.float32) / np.float32(255))
    return run


# name -> (input name, input shape, allowed dtypes, output name, output shape, fn)
MODELS = {
    "mobilenet": ("images", (1, 224, 224, 3), ("float32",), "scores", (1, 1001), run_mobilenet),
    "inception": ("images", (1, 299, 299, 3), ("float32",), "scores", (1, 1001), run_inception),
    "yolov5": ("images", (1, 640, 640, 3), ("float32",), "output0", (1, 25200, 85), run_yolov5),
    "bert": ("input_ids", (1, 500), ("int32", "int64"), "logits", (1, 2), run_bert),
    "mobilenet_u8": ("images", (1, 224, 224, 3), ("uint8",), "scores", (1, 1001),
                     _from_u8(run_mobilenet)),
    "yolov5_u8": ("images", (1, 640, 640, 3), ("uint8",), "output0", (1, 25200, 85),
                  _from_u8(run_yolov5)),
    # bert's signature, but a broken server's Predict: OK with no outputs.
    "hollow": ("input_ids", (1, 500), ("int32", "int64"), "logits", (1, 2), run_bert),
    # bert without metadata, int32 only.
    "opaque": ("input_ids", (1, 500), ("int32",), "logits", (1, 2), run_bert),
    # opaque, whose only signature is not "serving_default".
    "opaque_sig": ("input_ids", (1, 500), ("int32",), "logits", (1, 2), run_bert),
}
# Models whose metadata calls answer UNIMPLEMENTED.
NO_METADATA = ("opaque", "opaque_sig")
# Models whose one signature has another name than SIGNATURE.
SIGNATURE_OF = {"opaque_sig": "classify"}
VERSION = 1
SIGNATURE = "serving_default"

ECHO = "echo"
# echo's inputs: name -> (TF DataType name, KServe datatype, numpy dtype or None
# for strings), in signature order.
ECHO_INPUTS = {
    "f32": ("DT_FLOAT", "FP32", np.float32),
    "f64": ("DT_DOUBLE", "FP64", np.float64),
    "f16": ("DT_HALF", "FP16", np.float16),
    "i8": ("DT_INT8", "INT8", np.int8),
    "i16": ("DT_INT16", "INT16", np.int16),
    "i32": ("DT_INT32", "INT32", np.int32),
    "i64": ("DT_INT64", "INT64", np.int64),
    "u8": ("DT_UINT8", "UINT8", np.uint8),
    "u16": ("DT_UINT16", "UINT16", np.uint16),
    "u32": ("DT_UINT32", "UINT32", np.uint32),
    "u64": ("DT_UINT64", "UINT64", np.uint64),
    "b": ("DT_BOOL", "BOOL", np.bool_),
    "str": ("DT_STRING", "BYTES", None),
    "raw_bytes": ("DT_STRING", "BYTES", None),
}


def echo_out_name(name):
    """echo's output for an input: NAME_out, keeping a "_bytes" suffix last."""
    if name.endswith("_bytes"):
        return name[:-len("_bytes")] + "_out_bytes"
    return name + "_out"


# --version-label NAME=VERSION: label -> version number.
VERSION_LABELS = {}


def check_model(name, version):
    """Like find_model, but also knows echo (served over gRPC only)."""
    if name == ECHO:
        if version not in (None, "", VERSION, str(VERSION)):
            raise ModelError("NOT_FOUND",
                             "Servable not found for request: Specific(%s, %s)" % (name, version))
        return None
    return find_model(name, version)


def find_model(name, version):
    """Returns the model tuple; version is None/"" (latest) or the number 1."""
    spec = MODELS.get(name)
    if spec is None:
        raise ModelError("NOT_FOUND", "Servable not found for request: Latest(%s)" % name)
    if version not in (None, "", VERSION, str(VERSION)):
        raise ModelError("NOT_FOUND",
                         "Servable not found for request: Specific(%s, %s)" % (name, version))
    return spec


def run_model(name, version, inputs):
    """inputs: dict name -> numpy array. Returns (output name, float32 array)."""
    in_name, in_shape, dtypes, out_name, _, fn = find_model(name, version)
    if set(inputs) != {in_name}:
        raise ModelError("INVALID_ARGUMENT", "model %s expects exactly one input named '%s', got %s"
                         % (name, in_name, sorted(inputs)))
    x = inputs[in_name]
    if str(x.dtype) not in dtypes:
        raise ModelError("INVALID_ARGUMENT", "input '%s' must be %s, got %s"
                         % (in_name, " or ".join(dtypes), x.dtype))
    if tuple(x.shape) != in_shape:
        raise ModelError("INVALID_ARGUMENT", "input '%s' must have shape %s, got %s"
                         % (in_name, list(in_shape), list(x.shape)))
    return out_name, fn(x)


def _label(v):
    """A Prometheus label value, escaped."""
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """TF Serving's request counters, shared by the gRPC and REST threads."""

    BOUNDS = [10 * 1.8 ** i for i in range(33)]  # microseconds, as TF Serving

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}     # (model, status) -> n
        self.latency = {}    # (model, api, entrypoint) -> [buckets..., sum, count]

    def record(self, model, status, api, entrypoint, seconds):
        us = seconds * 1e6
        with self.lock:
            self.counts[(model, status)] = self.counts.get((model, status), 0) + 1
            h = self.latency.setdefault((model, api, entrypoint),
                                        [0] * (len(self.BOUNDS) + 1) + [0.0, 0])
            for i, b in enumerate(self.BOUNDS):
                if us <= b:
                    h[i] += 1
                    break
            else:
                h[len(self.BOUNDS)] += 1
            h[-2] += us
            h[-1] += 1

    def text(self):
        out = []
        with self.lock:
            out.append("# TYPE :tensorflow:serving:request_count counter")
            for (m, st), n in sorted(self.counts.items()):
                out.append(':tensorflow:serving:request_count{model_name="%s",status="%s"} %d'
                           % (_label(m), _label(st), n))
            out.append("# TYPE :tensorflow:serving:request_latency histogram")
            name = ":tensorflow:serving:request_latency"
            for (m, api, ep), h in sorted(self.latency.items()):
                labels = 'model_name="%s",API="%s",entrypoint="%s"' % (_label(m), api, ep)
                cum = 0
                for i, b in enumerate(self.BOUNDS + [None]):
                    cum += h[i]
                    le = "+Inf" if b is None else repr(b)
                    out.append('%s_bucket{%s,le="%s"} %d' % (name, labels, le, cum))
                out.append("%s_sum{%s} %r" % (name, labels, h[-2]))
                out.append("%s_count{%s} %d" % (name, labels, h[-1]))
        return "\n".join(out) + "\n"


class Server:
    """Holds the generated modules and serves both gRPC APIs and REST."""

    def __init__(self, delay_ms):
        self.delay_ms = delay_ms
        self.metrics = Metrics()
        self.aborted = threading.local()
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow.core.protobuf import meta_graph_pb2
        from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                             predict_pb2, prediction_service_pb2_grpc,
                                             model_service_pb2_grpc)
        from kserve import grpc_predict_v2_pb2, grpc_predict_v2_pb2_grpc
        self.tensor_pb2 = tensor_pb2
        self.shape_pb2 = tensor_shape_pb2
        self.types = types_pb2
        self.meta_graph_pb2 = meta_graph_pb2
        self.meta_pb2 = get_model_metadata_pb2
        self.status_pb2 = get_model_status_pb2
        self.predict_pb2 = predict_pb2
        self.ps_grpc = prediction_service_pb2_grpc
        self.ms_grpc = model_service_pb2_grpc
        self.kv2 = grpc_predict_v2_pb2
        self.kv2_grpc = grpc_predict_v2_pb2_grpc
        t = types_pb2
        self.dt_to_np = {t.DT_FLOAT: np.float32, t.DT_DOUBLE: np.float64, t.DT_INT32: np.int32,
                         t.DT_INT64: np.int64, t.DT_UINT8: np.uint8, t.DT_INT8: np.int8,
                         t.DT_INT16: np.int16, t.DT_UINT16: np.uint16, t.DT_UINT32: np.uint32,
                         t.DT_UINT64: np.uint64, t.DT_BOOL: np.bool_, t.DT_HALF: np.float16}
        self.np_to_dt = {np.dtype(v).name: k for k, v in self.dt_to_np.items()}

    def wait(self, context=None):
        """The --delay-ms pause, cut short when the caller has gone."""
        end = time.monotonic() + self.delay_ms / 1000.0
        while True:
            left = end - time.monotonic()
            if left <= 0 or (context is not None and not context.is_active()):
                return
            time.sleep(min(left, 0.02))

    # ---- TF Serving tensors ------------------------------------------------
    def tensor_to_np(self, name, t):
        np_type = self.dt_to_np.get(t.dtype)
        if np_type is None:
            raise ModelError("INVALID_ARGUMENT", "input '%s': unsupported dtype %s"
                             % (name, self.types.DataType.Name(t.dtype)))
        if t.tensor_shape.unknown_rank:
            raise ModelError("INVALID_ARGUMENT", "input '%s': unknown rank" % name)
        shape = [d.size for d in t.tensor_shape.dim]
        if any(s < 0 for s in shape):
            raise ModelError("INVALID_ARGUMENT", "input '%s': negative dimension" % name)
        count = int(np.prod(shape, dtype=np.int64))
        if t.tensor_content:
            if len(t.tensor_content) != count * np.dtype(np_type).itemsize:
                raise ModelError("INVALID_ARGUMENT",
                                 "input '%s': tensor_content has %d bytes, shape %s needs %d"
                                 % (name, len(t.tensor_content), shape,
                                    count * np.dtype(np_type).itemsize))
            return np.frombuffer(t.tensor_content, dtype=np.dtype(np_type).newbyteorder("<")) \
                     .astype(np_type).reshape(shape)
        dt = self.types
        if t.dtype == dt.DT_FLOAT:
            vals = t.float_val
        elif t.dtype == dt.DT_DOUBLE:
            vals = t.double_val
        elif t.dtype == dt.DT_INT64:
            vals = t.int64_val
        elif t.dtype == dt.DT_BOOL:
            vals = t.bool_val
        elif t.dtype == dt.DT_UINT32:
            vals = t.uint32_val
        elif t.dtype == dt.DT_UINT64:
            vals = t.uint64_val
        elif t.dtype == dt.DT_HALF:
            vals = np.array(t.half_val, dtype=np.uint16).view(np.float16)
        else:
            vals = t.int_val
        arr = np.array(vals, dtype=np_type)
        if arr.size != count:
            raise ModelError("INVALID_ARGUMENT", "input '%s': %d values for shape %s"
                             % (name, arr.size, shape))
        return arr.reshape(shape)

    def np_to_tensor(self, arr):
        t = self.tensor_pb2.TensorProto()
        t.dtype = self.np_to_dt[arr.dtype.name]
        for s in arr.shape:
            t.tensor_shape.dim.add().size = s
        t.tensor_content = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        return t

    def spec_fields(self, spec, predict=False):
        version = spec.version.value if spec.HasField("version") else None
        if spec.WhichOneof("version_choice") == "version_label":
            version = VERSION_LABELS.get(spec.version_label)
            if version is None:
                raise ModelError("INVALID_ARGUMENT", "Unrecognized servable version label: %s"
                                 % spec.version_label)
        if spec.name in SIGNATURE_OF:
            # TF Serving reads the signature for Predict only; "" means
            # serving_default, which this model lacks.
            if predict and spec.signature_name != SIGNATURE_OF[spec.name]:
                raise ModelError("INVALID_ARGUMENT", "Serving signature key \"%s\" not found."
                                 % (spec.signature_name or SIGNATURE))
        elif spec.signature_name not in ("", SIGNATURE):
            raise ModelError("INVALID_ARGUMENT", "Serving signature name: \"%s\" not found in "
                             "signature def" % spec.signature_name)
        return spec.name, version

    def fill_spec(self, out, name):
        out.name = name
        out.version.value = VERSION
        out.signature_name = SIGNATURE_OF.get(name, SIGNATURE)

    # ---- gRPC handlers ------------------------------------------------------
    def _abort(self, context, err):
        import grpc
        self.aborted.code = err.code  # for _counted, on this thread
        context.abort(getattr(grpc.StatusCode, err.code), err.message)

    def predict(self, request, context):
        return self._counted(request.model_spec.name, "predict", self._predict, request, context)

    def model_infer(self, request, context):
        return self._counted(request.model_name, "infer", self._model_infer, request, context)

    def _counted(self, model, api, fn, request, context):
        """Runs a gRPC prediction and records it as TF Serving would."""
        start = time.monotonic()
        self.aborted.code = None
        status = "UNKNOWN"
        try:
            resp = fn(request, context)
            status = "OK"
            return resp
        finally:
            if status != "OK" and self.aborted.code:
                status = self.aborted.code
            elif not context.is_active():
                # The caller cancelled (its RST_STREAM came) or its deadline
                # passed while we worked: nobody gets this answer. Counted
                # apart so tests can tell a cancelled call from a served one.
                status = "CANCELLED"
            self.metrics.record(model, status, api, "GRPC", time.monotonic() - start)

    def _predict(self, request, context):
        self.wait(context)
        try:
            name, version = self.spec_fields(request.model_spec, predict=True)
            if check_model(name, version) is None:
                return self.echo_predict(request)
            inputs = {k: self.tensor_to_np(k, v) for k, v in request.inputs.items()}
            out_name, out = run_model(name, version, inputs)
            for f in request.output_filter:
                if f != out_name:
                    raise ModelError("INVALID_ARGUMENT", "output tensor alias not found in "
                                     "signature: %s" % f)
        except ModelError as e:
            self._abort(context, e)
        resp = self.predict_pb2.PredictResponse()
        self.fill_spec(resp.model_spec, name)
        if name != "hollow":
            resp.outputs[out_name].CopyFrom(self.np_to_tensor(out))
        return resp

    # ---- echo ------------------------------------------------------------------
    def echo_check(self, names):
        if not names:
            raise ModelError("INVALID_ARGUMENT", "model echo needs at least one input")
        for k in names:
            if k not in ECHO_INPUTS:
                raise ModelError("INVALID_ARGUMENT", "model echo has no input named '%s'" % k)

    def echo_predict(self, request):
        """Echo over TF Serving: each input back in the typed *_val fields."""
        self.echo_check(list(request.inputs))
        for f in request.output_filter:
            if f not in [echo_out_name(k) for k in request.inputs]:
                raise ModelError("INVALID_ARGUMENT", "output tensor alias not found in "
                                 "signature: %s" % f)
        resp = self.predict_pb2.PredictResponse()
        self.fill_spec(resp.model_spec, ECHO)
        wanted = set(request.output_filter)
        for k, t in request.inputs.items():
            dt_name = ECHO_INPUTS[k][0]
            if t.dtype != self.types.DataType.Value(dt_name):
                raise ModelError("INVALID_ARGUMENT", "input '%s' must be %s, got %s"
                                 % (k, dt_name, self.types.DataType.Name(t.dtype)))
            if wanted and echo_out_name(k) not in wanted:
                continue
            out = resp.outputs[echo_out_name(k)]
            out.dtype = t.dtype
            out.tensor_shape.CopyFrom(t.tensor_shape)
            if dt_name == "DT_STRING":
                count = int(np.prod([d.size for d in t.tensor_shape.dim], dtype=np.int64))
                if len(t.string_val) != count:
                    raise ModelError("INVALID_ARGUMENT", "input '%s': %d strings for %d elements"
                                     % (k, len(t.string_val), count))
                out.string_val.extend(t.string_val)
                continue
            vals = self.tensor_to_np(k, t).ravel()
            if dt_name == "DT_FLOAT":
                out.float_val.extend(vals.tolist())
            elif dt_name == "DT_DOUBLE":
                out.double_val.extend(vals.tolist())
            elif dt_name == "DT_HALF":
                out.half_val.extend(vals.view(np.uint16).tolist())
            elif dt_name == "DT_INT64":
                out.int64_val.extend(vals.tolist())
            elif dt_name == "DT_UINT32":
                out.uint32_val.extend(vals.tolist())
            elif dt_name == "DT_UINT64":
                out.uint64_val.extend(vals.tolist())
            elif dt_name == "DT_BOOL":
                out.bool_val.extend(vals.tolist())
            else:
                out.int_val.extend(vals.astype(np.int64).tolist())
        return resp

    def echo_signature_def(self):
        sig = self.meta_graph_pb2.SignatureDef()
        sig.method_name = "tensorflow/serving/predict"
        for k, (dt_name, _, _) in ECHO_INPUTS.items():
            for coll, tname in ((sig.inputs, k), (sig.outputs, echo_out_name(k))):
                info = coll[tname]
                info.name = tname + ":0"
                info.dtype = self.types.DataType.Value(dt_name)
                info.tensor_shape.unknown_rank = True
        return sig

    def echo_infer(self, request):
        """Echo over KServe v2: raw inputs come back as raw outputs, bytes for
        bytes; typed contents come back as typed contents."""
        names = [t.name for t in request.inputs]
        self.echo_check(names)
        if len(set(names)) != len(names):
            raise ModelError("INVALID_ARGUMENT", "an input is named twice")
        raws = list(request.raw_input_contents)
        if raws and len(raws) != len(request.inputs):
            raise ModelError("INVALID_ARGUMENT", "raw_input_contents has %d entries for %d "
                             "inputs" % (len(raws), len(request.inputs)))
        for o in request.outputs:
            if o.name not in [echo_out_name(k) for k in names]:
                raise ModelError("INVALID_ARGUMENT", "unknown output '%s'" % o.name)
        resp = self.kv2.ModelInferResponse(model_name=ECHO, model_version=str(VERSION),
                                           id=request.id)
        wanted = {o.name for o in request.outputs}
        for i, t in enumerate(request.inputs):
            want = ECHO_INPUTS[t.name][1]
            if t.datatype != want:
                raise ModelError("INVALID_ARGUMENT", "input '%s' must be %s, got %s"
                                 % (t.name, want, t.datatype))
            if wanted and echo_out_name(t.name) not in wanted:
                if want != "BYTES":
                    self.kv2_input(t, raws[i] if raws else None)  # checked all the same
                continue
            o = resp.outputs.add(name=echo_out_name(t.name), datatype=t.datatype,
                                 shape=list(t.shape))
            count = int(np.prod(list(t.shape), dtype=np.int64))
            if want == "BYTES":
                if raws:
                    self.kv2_check_bytes(t.name, raws[i], count)
                    resp.raw_output_contents.append(raws[i])
                elif len(t.contents.bytes_contents) != count:
                    raise ModelError("INVALID_ARGUMENT", "input '%s': %d strings for %d elements"
                                     % (t.name, len(t.contents.bytes_contents), count))
                else:
                    o.contents.bytes_contents.extend(t.contents.bytes_contents)
                continue
            arr = self.kv2_input(t, raws[i] if raws else None)
            if raws:
                resp.raw_output_contents.append(raws[i])
            else:
                getattr(o.contents, self.KV2_FIELD[want]).extend(arr.ravel().tolist())
        return resp

    @staticmethod
    def kv2_check_bytes(name, raw, count):
        """Checks KServe's raw BYTES layout: count x (uint32 LE length, bytes)."""
        at = 0
        for _ in range(count):
            if at + 4 > len(raw):
                raise ModelError("INVALID_ARGUMENT", "input '%s': raw BYTES cut short" % name)
            n = int.from_bytes(raw[at:at + 4], "little")
            at += 4 + n
        if at != len(raw):
            raise ModelError("INVALID_ARGUMENT", "input '%s': raw BYTES do not match the shape"
                             % name)

    def signature_def(self, name):
        in_name, in_shape, dtypes, out_name, out_shape, _ = MODELS[name]
        sig = self.meta_graph_pb2.SignatureDef()
        sig.method_name = "tensorflow/serving/predict"
        for coll, tname, shape, dtype in ((sig.inputs, in_name, in_shape, dtypes[0]),
                                          (sig.outputs, out_name, out_shape, "float32")):
            info = coll[tname]
            info.name = tname + ":0"
            info.dtype = self.np_to_dt[dtype]
            for i, s in enumerate(shape):
                info.tensor_shape.dim.add().size = -1 if i == 0 else s
        return sig

    def get_model_metadata(self, request, context):
        try:
            name, version = self.spec_fields(request.model_spec)
            check_model(name, version)
            if name in NO_METADATA:
                raise ModelError("UNIMPLEMENTED", "GetModelMetadata is not implemented")
            if list(request.metadata_field) != ["signature_def"]:
                raise ModelError("INVALID_ARGUMENT",
                                 "Metadata field %s is not supported"
                                 % (list(request.metadata_field) or "(none)"))
        except ModelError as e:
            self._abort(context, e)
        resp = self.meta_pb2.GetModelMetadataResponse()
        self.fill_spec(resp.model_spec, name)
        sdm = self.meta_pb2.SignatureDefMap()
        sdm.signature_def[SIGNATURE].CopyFrom(
            self.echo_signature_def() if name == ECHO else self.signature_def(name))
        resp.metadata["signature_def"].Pack(sdm)
        return resp

    def get_model_status(self, request, context):
        try:
            name, version = self.spec_fields(request.model_spec)
            check_model(name, version)
        except ModelError as e:
            self._abort(context, e)
        resp = self.status_pb2.GetModelStatusResponse()
        st = resp.model_version_status.add()
        st.version = VERSION
        st.state = self.status_pb2.ModelVersionStatus.AVAILABLE
        return resp

    # ---- KServe v2 -------------------------------------------------------------
    KV2_TO_NP = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64,
                 "INT8": np.int8, "INT16": np.int16, "UINT8": np.uint8, "UINT16": np.uint16,
                 "UINT32": np.uint32, "UINT64": np.uint64, "BOOL": np.bool_, "FP16": np.float16}
    KV2_FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents",
                 "INT16": "int_contents", "INT8": "int_contents", "INT64": "int64_contents",
                 "UINT8": "uint_contents", "UINT16": "uint_contents", "UINT32": "uint_contents",
                 "UINT64": "uint64_contents", "BOOL": "bool_contents"}

    def kv2_input(self, t, raw):
        np_type = self.KV2_TO_NP.get(t.datatype)
        if np_type is None:
            raise ModelError("INVALID_ARGUMENT", "input '%s': unsupported datatype '%s'"
                             % (t.name, t.datatype))
        shape = list(t.shape)
        if any(s < 0 for s in shape):
            raise ModelError("INVALID_ARGUMENT", "input '%s': negative dimension" % t.name)
        count = int(np.prod(shape, dtype=np.int64))
        if raw is not None:
            need = count * np.dtype(np_type).itemsize
            if len(raw) != need:
                raise ModelError("INVALID_ARGUMENT", "input '%s': raw content has %d bytes, "
                                 "expected %d" % (t.name, len(raw), need))
            return np.frombuffer(raw, dtype=np.dtype(np_type).newbyteorder("<")) \
                     .astype(np_type).reshape(shape)
        field = self.KV2_FIELD.get(t.datatype)
        if field is None:
            raise ModelError("INVALID_ARGUMENT", "input '%s': datatype %s needs raw contents"
                             % (t.name, t.datatype))
        arr = np.array(getattr(t.contents, field), dtype=np_type)
        if arr.size != count:
            raise ModelError("INVALID_ARGUMENT", "input '%s': %d values for shape %s"
                             % (t.name, arr.size, shape))
        return arr.reshape(shape)

    def _model_infer(self, request, context):
        self.wait(context)
        try:
            if check_model(request.model_name, request.model_version) is None:
                return self.echo_infer(request)
            raws = list(request.raw_input_contents)
            if raws and len(raws) != len(request.inputs):
                raise ModelError("INVALID_ARGUMENT", "raw_input_contents has %d entries for %d "
                                 "inputs" % (len(raws), len(request.inputs)))
            inputs = {}
            for i, t in enumerate(request.inputs):
                inputs[t.name] = self.kv2_input(t, raws[i] if raws else None)
            out_name, out = run_model(request.model_name, request.model_version, inputs)
            for o in request.outputs:
                if o.name != out_name:
                    raise ModelError("INVALID_ARGUMENT", "unknown output '%s'" % o.name)
        except ModelError as e:
            self._abort(context, e)
        resp = self.kv2.ModelInferResponse(model_name=request.model_name,
                                           model_version=str(VERSION), id=request.id)
        o = resp.outputs.add(name=out_name, datatype="FP32", shape=list(out.shape))
        if raws:
            resp.raw_output_contents.append(out.astype("<f4").tobytes())
        else:
            o.contents.fp32_contents.extend(out.ravel().tolist())
        return resp

    def kv2_metadata(self, request, context):
        try:
            check_model(request.name, request.version)
            if request.name in NO_METADATA:
                raise ModelError("UNIMPLEMENTED", "ModelMetadata is not implemented")
        except ModelError as e:
            self._abort(context, e)
        if request.name == ECHO:
            resp = self.kv2.ModelMetadataResponse(name=ECHO, versions=[str(VERSION)],
                                                  platform="kvc_numpy")
            for k, (_, kv_name, _) in ECHO_INPUTS.items():
                resp.inputs.add(name=k, datatype=kv_name, shape=[-1])
            for k, (_, kv_name, _) in ECHO_INPUTS.items():
                resp.outputs.add(name=echo_out_name(k), datatype=kv_name, shape=[-1])
            return resp
        in_name, in_shape, dtypes, out_name, out_shape, _ = MODELS[request.name]
        dt = {"float32": "FP32", "int32": "INT32", "int64": "INT64", "uint8": "UINT8"}
        resp = self.kv2.ModelMetadataResponse(name=request.name, versions=[str(VERSION)],
                                              platform="kvc_numpy")
        resp.inputs.add(name=in_name, datatype=dt[dtypes[0]], shape=list(in_shape))
        resp.outputs.add(name=out_name, datatype="FP32", shape=list(out_shape))
        return resp

    def kv2_model_ready(self, request, context):
        try:
            check_model(request.name, request.version)
            return self.kv2.ModelReadyResponse(ready=True)
        except ModelError:
            return self.kv2.ModelReadyResponse(ready=False)

    def add_to_grpc(self, server):
        import grpc
        ps = self.ps_grpc
        ms = self.ms_grpc
        kv = self.kv2_grpc
        outer = self

        class Prediction(ps.PredictionServiceServicer):
            def Predict(self, request, context):
                return outer.predict(request, context)

            def GetModelMetadata(self, request, context):
                return outer.get_model_metadata(request, context)

        class ModelSvc(ms.ModelServiceServicer):
            def GetModelStatus(self, request, context):
                return outer.get_model_status(request, context)

        class Inference(kv.GRPCInferenceServiceServicer):
            def ServerLive(self, request, context):
                return outer.kv2.ServerLiveResponse(live=True)

            def ServerReady(self, request, context):
                return outer.kv2.ServerReadyResponse(ready=True)

            def ModelReady(self, request, context):
                return outer.kv2_model_ready(request, context)

            def ServerMetadata(self, request, context):
                return outer.kv2.ServerMetadataResponse(name="kvc-model-server",
                                                        version=grpc.__version__)

            def ModelMetadata(self, request, context):
                return outer.kv2_metadata(request, context)

            def ModelInfer(self, request, context):
                return outer.model_infer(request, context)

        ps.add_PredictionServiceServicer_to_server(Prediction(), server)
        ms.add_ModelServiceServicer_to_server(ModelSvc(), server)
        kv.add_GRPCInferenceServiceServicer_to_server(Inference(), server)


# ---- REST (TF Serving JSON) ---------------------------------------------------

def _float_json(arr):
    """float32 values as TF Serving's REST API writes them (WriteDecimal in
    tensorflow_serving/util/json_tensor.cc): six significant digits, printf
    "%g" style (absl::StrCat), when that reads back to the same float32,
    otherwise "%.9g" (max_digits10); ".0" appended when the text has neither
    a '.' nor an exponent; NaN, Infinity, -Infinity for the rest."""
    flat = np.asarray(arr, dtype=np.float32).ravel()
    wide = flat.astype(np.float64)
    s = np.char.mod("%g", wide).astype("<U16")  # "%.9g" needs up to 15
    finite = np.isfinite(flat)
    with np.errstate(invalid="ignore"):
        lossy = finite & (s.astype(np.float64).astype(np.float32) != flat)
    if lossy.any():
        s[lossy] = np.char.mod("%.9g", wide[lossy])
    bare = finite & (np.char.find(s, ".") < 0) & (np.char.find(s, "e") < 0)
    s[bare] = np.char.add(s[bare], ".0")
    s[np.isnan(flat)] = "NaN"
    s[np.isposinf(flat)] = "Infinity"
    s[np.isneginf(flat)] = "-Infinity"
    return s.reshape(np.shape(arr))


def _pretty_json(strs, level):
    """Nested JSON lists laid out as TF Serving's REST API writes predict
    answers: RapidJSON's PrettyWriter, one value per line, 4-space indent.
    (TF Serving's json_tensor.cc builds every predict response with a
    PrettyWriter; that layout is most of why its JSON answers are large.)"""
    if strs.ndim == 0:
        return str(strs)
    pad = " " * (4 * (level + 1))
    if len(strs) == 0:
        return "[]"
    if strs.ndim == 1:
        items = (pad + v for v in strs.tolist())
    else:
        items = (pad + _pretty_json(sub, level + 1) for sub in strs)
    return "[\n" + ",\n".join(items) + "\n" + " " * (4 * level) + "]"


REST_PATH = re.compile(r"^/v1/models/([A-Za-z0-9_.-]+)(?:/versions/(\d+))?(:predict|/metadata)?$")


def make_rest_handler(server):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two sends; without TCP_NODELAY the
        # client's delayed ACK adds ~40 ms to every small answer
        disable_nagle_algorithm = True

        def log_message(self, fmt, *args):
            pass

        def _send(self, code, body):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, code, msg):
            self._send(code, json.dumps({"error": msg}))

        def _match(self):
            m = REST_PATH.match(self.path)
            if not m:
                self._error(404, "Malformed request: %s %s" % (self.command, self.path))
                return None
            return m

        def do_GET(self):
            if self.path == "/monitoring/prometheus/metrics":
                if server.metrics_off:
                    return self._error(404, "metrics are off (--metrics-off)")
                data = server.metrics.text().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            m = self._match()
            if not m:
                return
            name, version, action = m.group(1), m.group(2), m.group(3)
            try:
                find_model(name, int(version) if version else None)
            except ModelError as e:
                return self._error(404, e.message)
            if action == ":predict":
                return self._error(405, "predict needs POST")
            if action == "/metadata":
                in_name, in_shape, dtypes, out_name, out_shape, _ = MODELS[name]
                dtn = {"float32": "DT_FLOAT", "int32": "DT_INT32", "int64": "DT_INT64",
                       "uint8": "DT_UINT8"}

                def info(tn, shape, dt):
                    return {"dtype": dtn[dt], "tensor_shape": {"dim": [
                        {"size": str(-1 if i == 0 else s), "name": ""}
                        for i, s in enumerate(shape)], "unknown_rank": False},
                        "name": tn + ":0"}
                body = {"model_spec": {"name": name, "signature_name": "",
                                       "version": str(VERSION)},
                        "metadata": {"signature_def": {"signature_def": {SIGNATURE: {
                            "inputs": {in_name: info(in_name, in_shape, dtypes[0])},
                            "outputs": {out_name: info(out_name, out_shape, "float32")},
                            "method_name": "tensorflow/serving/predict"}}}}}
                return self._send(200, json.dumps(body))
            body = {"model_version_status": [{"version": str(VERSION), "state": "AVAILABLE",
                                              "status": {"error_code": "OK",
                                                         "error_message": ""}}]}
            self._send(200, json.dumps(body))

        def do_POST(self):
            m = self._match()
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length > 0 else b""
            if not m:
                return
            name, version, action = m.group(1), m.group(2), m.group(3)
            if action != ":predict":
                return self._error(404, "Malformed request: POST " + self.path)
            start = time.monotonic()
            status = "UNKNOWN"
            try:
                self._predict(name, version, raw)
                status = "OK"
            except ModelError as e:
                status = e.code
                self._error(404 if e.code == "NOT_FOUND" else 400, e.message)
            finally:
                server.metrics.record(name, status, "predict", "REST_PREDICT",
                                      time.monotonic() - start)

        def _predict(self, name, version, raw):
            server.wait()
            spec = find_model(name, int(version) if version else None)
            in_name, _, dtypes, _, _, _ = spec
            try:
                doc = json.loads(raw)
            except ValueError as e:
                raise ModelError("INVALID_ARGUMENT", "JSON Parse error: %s" % e)
            if not isinstance(doc, dict) or ("instances" in doc) == ("inputs" in doc):
                raise ModelError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
            row = "instances" in doc
            val = doc["instances"] if row else doc["inputs"]
            if isinstance(val, dict):
                if set(val) != {in_name}:
                    raise ModelError("INVALID_ARGUMENT", "expected input '%s'" % in_name)
                val = val[in_name]
            if row and isinstance(val, list) and val and isinstance(val[0], dict):
                val = [inst.get(in_name) for inst in val]
            try:
                x = np.asarray(val, dtype=np.dtype(dtypes[0]))
            except (ValueError, TypeError) as e:
                raise ModelError("INVALID_ARGUMENT", "bad tensor values: %s" % e)
            out_name, out = run_model(name, version and int(version), {in_name: x})
            text = _pretty_json(_float_json(out), 1)
            key = "predictions" if row else "outputs"
            self._send(200, '{\n    "%s": %s\n}' % (key, text))

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grpc-port", type=int, default=0)
    ap.add_argument("--rest-port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port-file", default=None)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--max-message-mb", type=int, default=64)
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--max-connection-age-ms", type=int, default=0,
                    help="close each client connection (GOAWAY) after this long, as servers "
                         "behind load balancers are often set to; 0: never")
    ap.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR)
    ap.add_argument("--metrics-off", action="store_true",
                    help="answer /monitoring/prometheus/metrics with 404")
    ap.add_argument("--tls-cert", default=None, help="PEM certificate chain: serve gRPC over TLS")
    ap.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop when the process that started us goes away (tests)")
    ap.add_argument("--version-label", action="append", default=[], metavar="NAME=VERSION",
                    help="serve version label NAME as VERSION (TF Serving's version_labels)")
    args = ap.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    for item in args.version_label:
        label, _, number = item.partition("=")
        if not label or not number.isdigit():
            ap.error("--version-label wants NAME=VERSION, not %r" % item)
        VERSION_LABELS[label] = int(number)

    gen_dir = tempfile.mkdtemp(prefix="kvc-model-server-")
    try:
        generate_protos(args.proto_dir, gen_dir)
        import grpc
        impl = Server(args.delay_ms)
        impl.metrics_off = args.metrics_off
        limit = args.max_message_mb * 1024 * 1024
        options = [("grpc.max_receive_message_length", limit),
                   ("grpc.max_send_message_length", limit)]
        if args.max_connection_age_ms > 0:
            options += [("grpc.max_connection_age_ms", args.max_connection_age_ms),
                        ("grpc.max_connection_age_grace_ms", 1000)]
        gserver = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers),
                              options=options)
        impl.add_to_grpc(gserver)
        addr = "%s:%d" % (args.host, args.grpc_port)
        if args.tls_cert:
            with open(args.tls_key, "rb") as f:
                key = f.read()
            with open(args.tls_cert, "rb") as f:
                chain = f.read()
            gport = gserver.add_secure_port(addr, grpc.ssl_server_credentials([(key, chain)]))
        else:
            gport = gserver.add_insecure_port(addr)
        if gport == 0:
            raise RuntimeError("cannot bind gRPC port %d" % args.grpc_port)
        ThreadingHTTPServer.daemon_threads = True
        httpd = ThreadingHTTPServer((args.host, args.rest_port), make_rest_handler(impl))
        rport = httpd.server_address[1]

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())

        gserver.start()
        rest_thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        rest_thread.start()
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as f:
                json.dump({"grpc": gport, "rest": rport, "pid": os.getpid(),
                           "tls": 1 if args.tls_cert else 0}, f)
            os.rename(tmp, args.port_file)
        print("model server: grpc%s %s:%d rest %s:%d" % (" (tls)" if args.tls_cert else "",
                                                         args.host, gport, args.host, rport),
              file=sys.stderr, flush=True)
        parent = os.getppid()
        while not stop.wait(0.5):
            if args.exit_with_parent and os.getppid() != parent:
                break
        gserver.stop(grace=0)
        httpd.shutdown()
        httpd.server_close()
    finally:
        shutil.rmtree(gen_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
