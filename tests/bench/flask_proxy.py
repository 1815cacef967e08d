#!/usr/bin/python3
"""The inference proxy a user would otherwise write with Flask: a baseline of
tests/bench/bench_overhead.sh next to python_proxy.py (issue 4: kvc's proxy
should serve at least 10x its requests per second).

A Flask route, request.get_json() and jsonify(); the Predict call itself
(numpy tensor, grpcio stubs generated at start) is pyproxy_lib.Backend,
shared with python_proxy.py, so the two baselines differ only in their HTTP
stack. Same scope: POST /v1/models/NAME:predict with "instances" or
"inputs" holding one unnamed tensor, and nothing else.

It runs on Flask's own server as `app.run()` starts it: Werkzeug's
ThreadedWSGIServer (threaded=True, app.run's default; HTTP/1.1 keep-alive),
no debugger, no reloader, request logging off (the "werkzeug" logger at
ERROR, the usual way). The server is made with werkzeug.serving.make_server,
the call app.run() ends in, only because app.run() neither reports the port
it bound for port 0 nor returns on SIGTERM.

Usage: /usr/bin/python3 flask_proxy.py --grpc HOST:PORT [--host 127.0.0.1]
           [--port 0] --port-file FILE [--input input_ids] [--exit-with-parent]
FILE gets {"port": P, "pid": N} once it listens. SIGTERM stops it.
"""

import logging
import sys
import threading

from flask import Flask, jsonify, request
from werkzeug.serving import make_server

import pyproxy_lib


def make_app(backend):
    app = Flask("flask_proxy")

    @app.post("/v1/models/<name>:predict")
    def predict(name):
        code, obj = backend.predict(name, request.get_json(force=True))
        return jsonify(obj), code

    return app


def main():
    args = pyproxy_lib.arg_parser(__doc__.split("\n")[0]).parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    def start(backend):
        srv = make_server(args.host, args.port, make_app(backend), threaded=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        return srv.port, srv.shutdown

    return pyproxy_lib.run(args, start)


if __name__ == "__main__":
    sys.exit(main())
