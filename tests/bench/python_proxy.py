#!/usr/bin/python3
"""The inference proxy a user would otherwise write: a baseline of
tests/bench/bench_overhead.sh (issue 4: kvc's proxy should serve at least
10x its requests per second).

Standard library HTTP (ThreadingHTTPServer, HTTP/1.1 keep-alive, Nagle off),
`json` to parse TF Serving REST bodies and write the answer; the Predict
call itself (numpy tensor, grpcio stubs generated at start) is
pyproxy_lib.Backend, shared with flask_proxy.py. It handles POST
/v1/models/NAME:predict with "instances" or "inputs" holding one unnamed
tensor, integer values as int32 and others as float32 -- the usual
hand-written shortcut -- and nothing else.

Usage: /usr/bin/python3 python_proxy.py --grpc HOST:PORT [--host 127.0.0.1]
           [--port 0] --port-file FILE [--input input_ids] [--exit-with-parent]
FILE gets {"port": P, "pid": N} once it listens. SIGTERM stops it.
"""

import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pyproxy_lib

PATH = re.compile(r"^/v1/models/([A-Za-z0-9_.-]+):predict$")


def make_handler(backend):
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
            except ValueError as e:
                return self._send(400, {"error": str(e)})
            self._send(*backend.predict(m.group(1), doc))

    return Handler


def main():
    args = pyproxy_lib.arg_parser(__doc__.split("\n")[0]).parse_args()

    def start(backend):
        ThreadingHTTPServer.daemon_threads = True
        httpd = ThreadingHTTPServer((args.host, args.port), make_handler(backend))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()

        def stop():
            httpd.shutdown()
            httpd.server_close()

        return httpd.server_address[1], stop

    return pyproxy_lib.run(args, start)


if __name__ == "__main__":
    sys.exit(main())
