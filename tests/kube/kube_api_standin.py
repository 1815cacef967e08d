#!/usr/bin/python3
"""kube_api_standin.py - a STAND-IN for a Kubernetes API server (a test double).

It is not Kubernetes. It implements only what kvc's client and the tests'
kubectl calls use, with the semantics the Kubernetes API documents:

  * TLS with the test's CA; a client certificate signed by that CA is
    required, a request without one gets a 401 Unauthorized Status.
    With --enable-bootstrap-token-auth (kube-apiserver's flag), a live
    bootstrap token is also accepted as a bearer token, for the group
    system:bootstrappers, which may read only discovery and cluster-info
    (403 Forbidden otherwise, worded as RBAC words it).
  * core/v1 Secrets, ConfigMaps, Nodes, Namespaces, PersistentVolumes
    (cluster-scoped), PersistentVolumeClaims and Services, and apps/v1
    Deployments: create (POST), get, list (labelSelector equality/
    existence, fieldSelector on metadata.name/namespace), JSON merge
    patch, server-side apply (application/apply-patch+yaml with
    fieldManager and force; the body is JSON, which is YAML, as kubectl
    sends it), delete. Objects carry uid, resourceVersion (one increasing
    counter), creationTimestamp, namespace and managedFields; Deployments
    also metadata.generation (1 at creation, +1 on every change of spec).
    Errors are Status objects with the API's reasons (AlreadyExists,
    NotFound, Conflict, Invalid, BadRequest, MethodNotAllowed,
    Unauthorized, UnsupportedMediaType).
  * Validation and defaulting of the new kinds where a client can get it
    wrong: a PV needs spec.capacity.storage, accessModes and an nfs source
    (immutable); a PVC needs resources.requests.storage and accessModes,
    and its spec is immutable except resources; a Service needs ports
    (named when more than one), gets a ClusterIP that never changes;
    a Deployment needs a selector (immutable) matching the template's
    labels and containers with a name and an image; replicas default 1.
    Writes never set status: only the simulated controllers below do.
  * Delete has no finalizers: every object goes at once (a real PVC or PV
    waits for its protection finalizer until nothing uses it; a real
    Deployment's ReplicaSets and pods are garbage-collected after it).
  * Secrets' stringData is folded into base64 data on every write.
  * What two kube-controller-manager controllers do for bootstrap tokens:
    the tokencleaner (a sweep every --sweep-ms deletes
    bootstrap.kubernetes.io/token Secrets whose expiration has passed) and
    the bootstrapsigner (--jws-delay-ms after a token changes, cluster-info
    in kube-public gets jws-kubeconfig-<id>, a detached-payload HS256 JWS
    keyed "<id>.<secret>" over its kubeconfig value, for every valid token
    that allows signing, and loses the keys of tokens that went).
  * SIMULATED controllers (not what runs the objects, only what their
    status would say): the deployment controller (see
    Store.schedule_deploy: --deploy-ready-ms after a Deployment's spec
    changes, status.observedGeneration, replicas, updatedReplicas,
    readyReplicas and availableReplicas follow spec.replicas; zero counts
    are omitted as the real one omits them) and the PV binder for claims
    that name their volume (Store.bind_volumes: Bound/Pending/Released,
    spec.claimRef). No pod, ReplicaSet, image or NFS mount exists.
  * Discovery for kubectl: /version, /api, /api/v1, /apis, /apis/apps,
    /apis/apps/v1 (legacy discovery; kubectl falls back to it from the
    aggregated form); a Table when kubectl asks for one. /openapi/* answers 404 (kubectl then skips
    OpenAPI-based validation; see the test for what it tolerates).

Server-side apply is simplified but kind-independent: each manager owns a
set of leaf field paths (fields_of: every leaf of the object under its
maps, lists taken whole as one leaf - real SSA merges lists keyed by
name, such as containers and ports, element by element; of metadata only
labels and annotations; never status). Update writes (POST, PUT, merge
patch) give the fields they change to their manager; an apply owns the
leaves of the object it sent. The applied object is merged over the live
one (maps merged, other values replaced); changing a leaf another
manager owns is a 409 Conflict with FieldManagerConflict causes (each
naming the field as .spec.replicas) unless force=true, which moves the
ownership; and a leaf the same manager applied before and omits now is
removed (with the maps that removal leaves empty). Values the server
sets (defaults, a ClusterIP, a claimRef) belong to no manager.

Test-only hooks live under /kvc-standin/ (fault injection, request
counts, a Deployment's ready count); nothing there is Kubernetes API.

It binds 127.0.0.1 port 0, prints the port on stdout, and exits when stdin
closes or on SIGTERM. Python standard library only.
"""
import argparse
import base64
import copy
import datetime
import hashlib
import hmac
import http.server
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

BOOTSTRAP_TYPE = "bootstrap.kubernetes.io/token"
TOKEN_NAME = re.compile(r"^bootstrap-token-([a-z0-9]{6})$")
TOKEN_ID = re.compile(r"^[a-z0-9]{6}$")
TOKEN_SECRET = re.compile(r"^[a-z0-9]{16}$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MAX_BODY = 3 * 1024 * 1024

# plural -> (kind, namespaced, short names, group/version)
RESOURCES = {
    "secrets": ("Secret", True, [], "v1"),
    "configmaps": ("ConfigMap", True, ["cm"], "v1"),
    "nodes": ("Node", False, ["no"], "v1"),
    "namespaces": ("Namespace", False, ["ns"], "v1"),
    "persistentvolumes": ("PersistentVolume", False, ["pv"], "v1"),
    "persistentvolumeclaims": ("PersistentVolumeClaim", True, ["pvc"], "v1"),
    "services": ("Service", True, ["svc"], "v1"),
    "deployments": ("Deployment", True, ["deploy"], "apps/v1"),
}
VERBS = ["create", "delete", "get", "list", "patch", "update"]
GROUP_VERSIONS = ["v1", "apps/v1"]


def url_prefix(gv):
    """/api/v1 for the core group, /apis/GROUP/VERSION for the others."""
    return "/api/" + gv if "/" not in gv else "/apis/" + gv


def openapi_doc(gv):
    """Just enough OpenAPI v3 for kubectl: each resource's PATCH operation,
    tagged with its group-version-kind and taking the fieldValidation query
    parameter, which tells kubectl to leave validation to the server."""
    group, version = gv.split("/") if "/" in gv else ("", gv)
    paths = {}
    for plural, (kind, namespaced, _, rgv) in RESOURCES.items():
        if rgv != gv:
            continue
        pre = url_prefix(gv)
        base = pre + "/namespaces/{namespace}/" + plural if namespaced else pre + "/" + plural
        paths[base + "/{name}"] = {"patch": {
            "operationId": "patch" + (group.capitalize() or "Core") + version.capitalize() + kind,
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
            "parameters": [{"name": p, "in": "query", "schema": {"type": "string"}}
                           for p in ("dryRun", "fieldManager", "fieldValidation", "force")],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (kvc stand-in)", "version": "v1.30.0"},
            "paths": paths, "components": {"schemas": {}}}


OPENAPI = {gv: openapi_doc(gv) for gv in GROUP_VERSIONS}
OPENAPI_HASH = {gv: hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:32].upper()
                for gv, d in OPENAPI.items()}


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(s):
    try:
        return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def status(code, reason, message, name=None, kind=None):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure" if code >= 400 else "Success",
            "message": message, "reason": reason, "code": code}
    if name is not None:
        body["details"] = {"name": name, "kind": kind}
    return code, body


class ApiError(Exception):
    def __init__(self, code, reason, message, name=None, kind=None, causes=None):
        super().__init__(message)
        self.answer = status(code, reason, message, name, kind)
        if causes:
            self.answer[1].setdefault("details", {})["causes"] = causes


def fields_of(obj):
    """The fields whose ownership server-side apply tracks: every leaf of
    the object as a path tuple -> value. Maps are walked; a list, a scalar
    or an empty map is a leaf (lists are atomic here). Of metadata only
    labels and annotations count; apiVersion, kind and status never do."""
    out = {}

    def walk(prefix, v):
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(prefix + (k,), x)
        else:
            out[prefix] = v

    for k, v in obj.items():
        if k in ("apiVersion", "kind", "status"):
            continue
        if k == "metadata":
            for mk in ("labels", "annotations"):
                for lk, lv in ((v or {}).get(mk) or {}).items():
                    out[("metadata", mk, lk)] = lv
            continue
        walk((k,), v)
    return out


def fpath(f):
    """A field path as the API's messages write it: .spec.replicas."""
    return "." + ".".join(f)


def remove_path(obj, f):
    """Removes the leaf at path f, and the maps the removal left empty."""
    chain = [obj]
    for k in f[:-1]:
        nxt = chain[-1].get(k) if isinstance(chain[-1], dict) else None
        if not isinstance(nxt, dict):
            return
        chain.append(nxt)
    chain[-1].pop(f[-1], None)
    for i in range(len(chain) - 1, 0, -1):
        if chain[i]:
            break
        chain[i - 1].pop(f[i - 1], None)


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    out = dict(target)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def parse_selector(text):
    """Label selector: k=v, k==v, k!=v, k, !k (comma = and)."""
    reqs = []
    if not text:
        return reqs
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ApiError(400, "BadRequest", "unable to parse requirement: empty")
        m = re.match(r"^([A-Za-z0-9./_-]+)\s*(==|!=|=)\s*([A-Za-z0-9._-]*)$", part)
        if m:
            reqs.append((m.group(1), m.group(2), m.group(3)))
        elif re.match(r"^![A-Za-z0-9./_-]+$", part):
            reqs.append((part[1:], "!", None))
        elif re.match(r"^[A-Za-z0-9./_-]+$", part):
            reqs.append((part, "exists", None))
        else:
            raise ApiError(400, "BadRequest",
                           "unable to parse requirement: %r (only equality selectors)" % part)
    return reqs


def selector_matches(reqs, labels):
    for k, op, v in reqs:
        if op in ("=", "==") and labels.get(k) != v:
            return False
        if op == "!=" and labels.get(k) == v:
            return False
        if op == "exists" and k not in labels:
            return False
        if op == "!" and k in labels:
            return False
    return True


class Store:
    """All objects, one lock, one resourceVersion counter."""

    def __init__(self, args):
        self.lock = threading.RLock()
        self.objs = {}  # (plural, ns, name) -> object
        self.rv = 0
        self.args = args
        self.owners = {}  # (plural, ns, name) -> {field path: manager}
        self.sign_timer = None
        self.faults = []  # test-only: injected answers (see Handler.test_hooks)
        self.requests = {}  # "METHOD /path" -> count, for tests to see retries
        self.forced_ready = {}  # test-only: (ns, name) -> readyReplicas to report
        self.deploy_timers = {}  # (ns, name) -> the simulated controller's pending sync
        self.next_ip = 10  # ClusterIPs 10.96.0.10 on
        self.port = 0
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self._put("namespaces", None, {
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns},
                "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}, "kube-apiserver")

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def _put(self, plural, ns, obj, manager, operation="Update"):
        meta = obj.setdefault("metadata", {})
        key = (plural, ns, meta["name"])
        old = self.objs.get(key)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
        else:
            meta["uid"] = old["metadata"]["uid"]
            meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        if ns is not None:
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        meta["resourceVersion"] = self.next_rv()
        mf = [e for e in (old or {}).get("metadata", {}).get("managedFields", [])
              if not (e.get("manager") == manager and e.get("operation") == operation)]
        mf.append({"manager": manager, "operation": operation, "apiVersion": RESOURCES[plural][3],
                   "time": now_rfc3339(), "fieldsType": "FieldsV1", "fieldsV1": {}})
        meta["managedFields"] = mf
        self.objs[key] = obj
        return obj

    # --- the bootstrapsigner ------------------------------------------------

    def schedule_sign(self):
        """Re-sign cluster-info a little later, like the controller's queue."""
        with self.lock:
            if self.sign_timer is not None:
                self.sign_timer.cancel()
            self.sign_timer = threading.Timer(self.args.jws_delay_ms / 1000.0, self.sign)
            self.sign_timer.daemon = True
            self.sign_timer.start()

    def valid_tokens(self):
        now = time.time()
        out = {}
        for (plural, ns, name), o in self.objs.items():
            if plural != "secrets" or ns != "kube-system" or o.get("type") != BOOTSTRAP_TYPE:
                continue
            m = TOKEN_NAME.match(name)
            d = {}
            for k, v in (o.get("data") or {}).items():
                try:
                    d[k] = base64.b64decode(v, validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    d[k] = None
            if not m or d.get("token-id") != m.group(1) or not TOKEN_SECRET.match(d.get("token-secret") or ""):
                continue
            if d.get("usage-bootstrap-signing") != "true":
                continue
            exp = d.get("expiration")
            if exp is not None:
                t = parse_rfc3339(exp)
                if t is None or t <= now:
                    continue
            out[m.group(1)] = d["token-secret"]
        return out

    def sign(self):
        with self.lock:
            key = ("configmaps", "kube-public", "cluster-info")
            cm = self.objs.get(key)
            if cm is None:
                return
            data = dict(cm.get("data") or {})
            payload = data.get("kubeconfig", "").encode()
            want = {}
            for tid, secret in self.valid_tokens().items():
                header = b64url(json.dumps({"alg": "HS256", "kid": tid}, separators=(",", ":")).encode())
                signing_input = (header + "." + b64url(payload)).encode()
                sig = hmac.new(("%s.%s" % (tid, secret)).encode(), signing_input, hashlib.sha256).digest()
                want["jws-kubeconfig-" + tid] = header + ".." + b64url(sig)
            new = {k: v for k, v in data.items() if not k.startswith("jws-kubeconfig-")}
            new.update(want)
            if new != data:
                cm = copy.deepcopy(cm)
                cm["data"] = new
                self._put("configmaps", "kube-public", cm, "kube-controller-manager")

    # --- SIMULATED deployment controller -----------------------------------------

    def schedule_deploy(self, ns, name):
        """SIMULATED: what kube-controller-manager's deployment controller,
        the ReplicaSet controller, the scheduler and the kubelets together
        would do for a Deployment - make its pods and report them ready -
        is here a timer: --deploy-ready-ms after a Deployment's spec
        changes, its status says every replica is there and ready
        (observedGeneration = generation, replicas = updatedReplicas =
        readyReplicas = availableReplicas = spec.replicas). No pod, no
        ReplicaSet, no image pull exists. The test hook
        /kvc-standin/deployments can hold readyReplicas lower."""
        with self.lock:
            key = (ns, name)
            t = self.deploy_timers.pop(key, None)
            if t is not None:
                t.cancel()
            t = threading.Timer(self.args.deploy_ready_ms / 1000.0, self.sync_deploy, (ns, name))
            t.daemon = True
            self.deploy_timers[key] = t
            t.start()

    def sync_deploy(self, ns, name):
        """Writes the simulated status of one Deployment (see schedule_deploy)."""
        with self.lock:
            self.deploy_timers.pop((ns, name), None)
            key = ("deployments", ns, name)
            obj = self.objs.get(key)
            if obj is None:
                return
            spec = obj.get("spec") or {}
            want = int(spec.get("replicas", 1))
            ready = want
            forced = self.forced_ready.get((ns, name))
            if forced is not None:
                ready = max(0, min(int(forced), want))
            st = {"observedGeneration": obj["metadata"].get("generation", 1),
                  "replicas": want, "updatedReplicas": want,
                  "conditions": [{"type": "Available", "status": "True" if ready >= want else "False",
                                  "reason": "MinimumReplicasAvailable" if ready >= want
                                  else "MinimumReplicasUnavailable",
                                  "lastUpdateTime": now_rfc3339()}]}
            # As the real controller, a zero count is left out (omitempty).
            if ready:
                st["readyReplicas"] = ready
                st["availableReplicas"] = ready
            else:
                st["unavailableReplicas"] = want
            def norm(s):
                s = copy.deepcopy(s)
                for c in s.get("conditions", []):
                    c.pop("lastUpdateTime", None)
                return s
            if norm(obj.get("status") or {}) == norm(st):
                return
            new = copy.deepcopy(obj)
            new["status"] = st
            self._put("deployments", ns, new, "kube-controller-manager")

    # --- SIMULATED volume binding --------------------------------------------------

    def bind_volumes(self):
        """SIMULATED: what the PV controller in kube-controller-manager does
        for claims that name their volume (spec.volumeName): a claim whose PV
        exists and is free or already its own is Bound and the PV gets
        spec.claimRef; a PV whose claim went is Released (Retain keeps it,
        and its stale claimRef stops another claim from binding, as in
        Kubernetes); a claim whose PV is missing or taken is Pending.
        Dynamic provisioning and storage classes are not simulated."""
        pvs = {k[2]: o for k, o in self.objs.items() if k[0] == "persistentvolumes"}
        pvcs = {(k[1], k[2]): o for k, o in self.objs.items() if k[0] == "persistentvolumeclaims"}
        for (ns, name), c in sorted(pvcs.items()):
            vol = (c.get("spec") or {}).get("volumeName")
            pv = pvs.get(vol) if vol else None
            ref = (pv or {}).get("spec", {}).get("claimRef")
            mine = ref is None or (ref.get("namespace") == ns and ref.get("name") == name
                                   and ref.get("uid") in (None, c["metadata"]["uid"]))
            phase = "Bound" if pv is not None and mine else "Pending"
            if pv is not None and mine:
                want_ref = {"kind": "PersistentVolumeClaim", "apiVersion": "v1", "namespace": ns,
                            "name": name, "uid": c["metadata"]["uid"]}
                if ref != want_ref:
                    pv = copy.deepcopy(pv)
                    pv["spec"]["claimRef"] = want_ref
                    pvs[vol] = self._put("persistentvolumes", None, pv, "kube-controller-manager")
            st = {"phase": phase}
            if phase == "Bound":
                st["accessModes"] = pv["spec"].get("accessModes", [])
                st["capacity"] = pv["spec"].get("capacity", {})
            if c.get("status") != st:
                c = copy.deepcopy(c)
                c["status"] = st
                self._put("persistentvolumeclaims", ns, c, "kube-controller-manager")
        pvcs = {(k[1], k[2]): o for k, o in self.objs.items() if k[0] == "persistentvolumeclaims"}
        for name, pv in sorted(pvs.items()):
            ref = (pv.get("spec") or {}).get("claimRef")
            if ref is None:
                phase = "Available"
            else:
                c = pvcs.get((ref.get("namespace"), ref.get("name")))
                phase = "Bound" if c is not None and c["metadata"]["uid"] == ref.get("uid") else "Released"
            if (pv.get("status") or {}).get("phase") != phase:
                pv = copy.deepcopy(pv)
                pv["status"] = {"phase": phase}
                self._put("persistentvolumes", None, pv, "kube-controller-manager")

    # --- the tokencleaner ------------------------------------------------------

    def sweep(self):
        now = time.time()
        gone = False
        with self.lock:
            for key, o in list(self.objs.items()):
                if key[0] != "secrets" or o.get("type") != BOOTSTRAP_TYPE:
                    continue
                exp = (o.get("data") or {}).get("expiration")
                if exp is None:
                    continue
                try:
                    t = parse_rfc3339(base64.b64decode(exp).decode())
                except (ValueError, UnicodeDecodeError):
                    t = None
                if t is not None and t <= now:
                    del self.objs[key]
                    self.owners.pop(key, None)
                    gone = True
        if gone:
            self.schedule_sign()


def fold_string_data(obj):
    """Secrets: stringData is write-only and lands in data as base64."""
    sd = obj.pop("stringData", None)
    if sd is not None:
        if not isinstance(sd, dict):
            raise ApiError(422, "Invalid", "Secret: stringData: must be a map of strings")
        data = dict(obj.get("data") or {})
        for k, v in sd.items():
            if not isinstance(v, str):
                raise ApiError(422, "Invalid", "Secret: stringData[%s]: must be a string" % k)
            data[k] = base64.b64encode(v.encode()).decode()
        obj["data"] = data
    for k, v in (obj.get("data") or {}).items():
        if not isinstance(v, str):
            raise ApiError(422, "Invalid", "Secret: data[%s]: must be a base64 string" % k)
        try:
            base64.b64decode(v, validate=True)
        except ValueError:
            raise ApiError(422, "Invalid", "Secret: data[%s]: illegal base64 data" % k)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-api-standin"

    def log_message(self, fmt, *a):  # quiet unless asked
        if self.server.args.verbose:
            sys.stderr.write("standin: " + (fmt % a) + "\n")

    @property
    def store(self):
        return self.server.store

    def send_json(self, code, body, ctype="application/json"):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "request body too large")
        return self.rfile.read(n) if n else b""

    def handle_any(self, method):
        try:
            body = self.read_body()
            user = self.authenticate()
            denied = self.authorize(method, user) if user else None
            if user is None:
                code, ans = status(401, "Unauthorized", "Unauthorized")
            elif denied:
                code, ans = denied
            elif self.path.startswith("/kvc-standin/"):
                code, ans = self.test_hooks(method, body)
            else:
                path = urllib.parse.urlsplit(self.path).path
                with self.store.lock:
                    k = method + " " + path
                    self.store.requests[k] = self.store.requests.get(k, 0) + 1
                    fault = next((f for f in self.store.faults if f["method"] == method
                                  and path.startswith(f["path"]) and f["count"] > 0), None)
                    if fault:
                        fault["count"] -= 1
                if fault:
                    if fault.get("delay_ms"):
                        time.sleep(fault["delay_ms"] / 1000.0)  # the fault is a slow server
                    if fault.get("oversize"):
                        try:
                            self.send_json(200, {"kind": "Status", "padding": "x" * (5 << 20)})
                        except OSError:
                            pass  # the client stops reading, as it should
                        return
                    code, ans = status(fault["code"], fault.get("reason", ""), "injected by the test")
                else:
                    code, ans = self.route(method, body)
        except ApiError as e:
            code, ans = e.answer
        except (BrokenPipeError, ConnectionResetError):
            return
        except Exception as e:  # a bug here must still answer like an API server
            sys.stderr.write("standin: internal error: %r\n" % e)
            code, ans = status(500, "InternalError", "internal error: %s" % type(e).__name__)
        self.send_json(code, ans)

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PUT(self):
        self.handle_any("PUT")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_DELETE(self):
        self.handle_any("DELETE")

    # --- authentication and authorization ----------------------------------------

    def authenticate(self):
        """(user, groups), or None: a client certificate signed by the CA is
        an administrator; with --enable-bootstrap-token-auth, a bearer
        bootstrap token "<id>.<secret>" whose Secret is live and allows
        authentication is system:bootstrap:<id> in system:bootstrappers plus
        its auth-extra-groups, as kube-apiserver's bootstrap authenticator."""
        if self.connection.getpeercert():
            return ("kvc-test-admin", ["system:masters"])
        auth = self.headers.get("Authorization") or ""
        if not (self.server.args.enable_bootstrap_token_auth and auth.startswith("Bearer ")):
            return None
        m = re.match(r"^([a-z0-9]{6})\.([a-z0-9]{16})$", auth[7:].strip())
        if not m:
            return None
        with self.store.lock:
            o = self.store.objs.get(("secrets", "kube-system", "bootstrap-token-" + m.group(1)))
            if not o or o.get("type") != BOOTSTRAP_TYPE:
                return None
            d = {}
            for k, v in (o.get("data") or {}).items():
                try:
                    d[k] = base64.b64decode(v).decode()
                except (ValueError, UnicodeDecodeError):
                    return None
        if d.get("token-id") != m.group(1) or not hmac.compare_digest(d.get("token-secret", ""), m.group(2)):
            return None
        if d.get("usage-bootstrap-authentication") != "true":
            return None
        if "expiration" in d:
            t = parse_rfc3339(d["expiration"])
            if t is None or t <= time.time():
                return None
        extra = [g for g in d.get("auth-extra-groups", "").split(",") if g]
        return ("system:bootstrap:" + m.group(1), ["system:bootstrappers"] + extra)

    def authorize(self, method, user):
        """None if allowed, else a 403 answer. Administrators may do anything;
        bootstrappers only discovery and reading cluster-info, as kubeadm's
        RBAC rules allow (their CSR rights are out of scope here)."""
        name, groups = user
        if "system:masters" in groups:
            return None
        path = urllib.parse.urlsplit(self.path).path
        parts = [p for p in path.split("/") if p]
        if method == "GET" and (parts in (["version"], ["api"], ["api", "v1"], ["apis"], ["apis", "apps"],
                                          ["apis", "apps", "v1"])
                                or parts[:1] == ["openapi"]
                                or parts == ["api", "v1", "namespaces", "kube-public", "configmaps", "cluster-info"]):
            return None
        rest = parts[2:] if parts[:2] == ["api", "v1"] else []
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        resource = rest[0] if rest else path
        verb = {"GET": "get" if len(rest) > 1 else "list", "POST": "create", "PATCH": "patch",
                "PUT": "update", "DELETE": "delete"}.get(method, method.lower())
        where = ' in the namespace "%s"' % ns if ns else " at the cluster scope"
        return status(403, "Forbidden", '%s is forbidden: User "%s" cannot %s resource "%s" in API group ""%s'
                      % (resource, name, verb, resource, where), rest[1] if len(rest) > 1 else None, resource)

    # --- test-only hooks (not Kubernetes API) ------------------------------------

    def test_hooks(self, method, body):
        """POST /kvc-standin/faults {method, path (prefix), code, reason, count,
        delay_ms, oversize}: the next count matching requests get that answer
        instead. DELETE /kvc-standin/faults clears them. GET
        /kvc-standin/requests: how many requests each "METHOD /path" got.
        POST /kvc-standin/deployments {namespace, name, readyReplicas}: the
        simulated deployment controller reports at most that many ready
        replicas for that Deployment from now on (null lifts the hold), and
        writes its status at once."""
        st = self.store
        with st.lock:
            if self.path == "/kvc-standin/faults" and method == "POST":
                f = self.decode(body)
                f.setdefault("count", 1)
                f.setdefault("code", 503)
                st.faults.append(f)
                return 201, {"faults": st.faults}
            if self.path == "/kvc-standin/faults" and method == "DELETE":
                st.faults = []
                return 200, {"faults": []}
            if self.path == "/kvc-standin/requests" and method == "GET":
                return 200, dict(st.requests)
            if self.path == "/kvc-standin/deployments" and method == "POST":
                f = self.decode(body)
                key = (f.get("namespace", "default"), f.get("name"))
                if f.get("readyReplicas") is None:
                    st.forced_ready.pop(key, None)
                else:
                    st.forced_ready[key] = int(f["readyReplicas"])
                st.sync_deploy(*key)
                return 200, {"forced": {"%s/%s" % k: v for k, v in st.forced_ready.items()}}
        raise ApiError(404, "NotFound", "no such test hook")

    # --- routing -----------------------------------------------------------------

    def route(self, method, body):
        url = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        if method == "GET" and parts == ["version"]:
            return 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-kvc-standin",
                         "gitCommit": "0" * 40, "gitTreeState": "clean",
                         "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22",
                         "compiler": "gc", "platform": "linux/amd64"}
        if method == "GET" and parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": [
                             {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % self.store.port}]}
        if method == "GET" and parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self.api_group("apps")]}
        if method == "GET" and parts == ["apis", "apps"]:
            g = self.api_group("apps")
            g.update({"kind": "APIGroup", "apiVersion": "v1"})
            return 200, g
        for gv in GROUP_VERSIONS:
            if method == "GET" and parts == url_prefix(gv).strip("/").split("/"):
                resources = []
                for p, (k, nsd, sn, rgv) in RESOURCES.items():
                    if rgv != gv:
                        continue
                    r = {"name": p, "singularName": k.lower(), "namespaced": nsd, "kind": k, "verbs": VERBS}
                    if sn:
                        r["shortNames"] = sn
                    resources.append(r)
                return 200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                             "resources": resources}
        if method == "GET" and parts == ["openapi", "v3"]:
            return 200, {"paths": {url_prefix(gv).strip("/"): {
                "serverRelativeURL": "/openapi/v3" + url_prefix(gv) + "?hash=" + OPENAPI_HASH[gv]}
                for gv in GROUP_VERSIONS}}
        for gv in GROUP_VERSIONS:
            if method == "GET" and parts == ["openapi", "v3"] + url_prefix(gv).strip("/").split("/"):
                return 200, OPENAPI[gv]
        for gv in GROUP_VERSIONS:
            pre = url_prefix(gv).strip("/").split("/")
            if len(parts) <= len(pre) or parts[:len(pre)] != pre:
                continue
            rest = parts[len(pre):]
            if rest[0] == "namespaces" and len(rest) >= 3:
                ns, plural, name = rest[1], rest[2], rest[3] if len(rest) > 3 else None
                if len(rest) > 4 or plural not in RESOURCES or not RESOURCES[plural][1]:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
            else:
                ns, plural, name = None, rest[0], rest[1] if len(rest) > 1 else None
                if len(rest) > 2 or plural not in RESOURCES:
                    raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if RESOURCES[plural][3] != gv:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.resource(method, plural, ns, name, q, body)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    @staticmethod
    def api_group(name):
        v = {"groupVersion": name + "/v1", "version": "v1"}
        return {"name": name, "versions": [v], "preferredVersion": v}

    def resource(self, method, plural, ns, name, q, body):
        kind, namespaced, _, _ = RESOURCES[plural]
        if "watch" in q and q["watch"] in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed", "watch is not supported by this stand-in")
        st = self.store
        with st.lock:
            if ns is not None and ("namespaces", None, ns) not in st.objs:
                raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns, ns, "namespaces")
            if name is None and method == "GET":
                return 200, self.list(plural, ns, q)
            if name is None and method == "POST":
                return self.create(plural, ns, q, body)
            if name is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            key = (plural, ns if namespaced else None, name)
            obj = st.objs.get(key)
            if method == "PATCH" and (self.headers.get("Content-Type") or "").startswith("application/apply-patch"):
                return self.apply(plural, key, obj, q, body)
            if obj is None:
                raise ApiError(404, "NotFound", '%s "%s" not found' % (plural, name), name, plural)
            if method == "GET":
                return 200, self.maybe_table(plural, [obj], single=True)
            if method == "DELETE":
                # No finalizers: an object goes at once (a real PVC waits for
                # kubernetes.io/pvc-protection until no pod uses it, a PV
                # for kubernetes.io/pv-protection until it is unbound).
                del st.objs[key]
                st.owners.pop(key, None)
                if plural == "secrets" and obj.get("type") == BOOTSTRAP_TYPE:
                    st.schedule_sign()
                if plural == "deployments":
                    t = st.deploy_timers.pop((ns, name), None)
                    if t is not None:
                        t.cancel()
                if plural in ("persistentvolumes", "persistentvolumeclaims"):
                    st.bind_volumes()
                return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                             "details": {"name": name, "kind": plural, "uid": obj["metadata"]["uid"]}}
            if method == "PATCH":
                ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
                if ctype != "application/merge-patch+json":
                    raise ApiError(415, "UnsupportedMediaType",
                                   "the body of the request was in an unknown format - accepted media types include: application/merge-patch+json, application/apply-patch+yaml")
                patch = self.decode(body)
                new = merge_patch(copy.deepcopy(obj), patch)
                return 200, self.write(plural, key, new, q.get("fieldManager", "unknown"), "Update", obj)
            if method == "PUT":
                new = self.decode(body)
                rv = new.get("metadata", {}).get("resourceVersion")
                if rv and rv != obj["metadata"]["resourceVersion"]:
                    raise ApiError(409, "Conflict",
                                   'Operation cannot be fulfilled on %s "%s": the object has been modified; please apply your changes to the latest version and try again' % (plural, name),
                                   name, plural)
                return 200, self.write(plural, key, new, q.get("fieldManager", "unknown"), "Update", obj)
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def decode(body):
        try:
            obj = json.loads(body or b"null")
        except ValueError as e:
            raise ApiError(400, "BadRequest", "the request body is not JSON: %s" % e)
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the request body must be a JSON object")
        return obj

    def check_object(self, plural, ns, obj, name=None):
        kind, gv = RESOURCES[plural][0], RESOURCES[plural][3]
        if obj.get("kind", kind) != kind or obj.get("apiVersion", gv) != gv:
            raise ApiError(400, "BadRequest", "the body is a %s/%s, not a %s %s" % (
                obj.get("apiVersion"), obj.get("kind"), gv, kind))
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            raise ApiError(422, "Invalid", "%s: metadata: Required value" % kind)
        n = meta.get("name")
        if not isinstance(n, str) or not n or len(n) > 253 or not DNS_SUBDOMAIN.match(n):
            raise ApiError(422, "Invalid", '%s "%s" is invalid: metadata.name: Invalid value' % (kind, n), n, plural)
        if name is not None and n != name:
            raise ApiError(400, "BadRequest", "the name of the object (%s) does not match the name on the URL (%s)" % (n, name))
        bns = meta.get("namespace")
        if ns is not None and bns not in (None, ns):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
        labels = meta.get("labels") or {}
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise ApiError(422, "Invalid", "%s: metadata.labels: must be a map of strings" % kind)
        annotations = meta.get("annotations") or {}
        if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
            raise ApiError(422, "Invalid", "%s: metadata.annotations: must be a map of strings" % kind)
        obj["apiVersion"], obj["kind"] = gv, kind
        if plural == "secrets":
            fold_string_data(obj)
            obj.setdefault("type", "Opaque")
        for gen in ("uid", "resourceVersion", "creationTimestamp", "generation"):
            meta.pop(gen, None)

    def write(self, plural, key, new, manager, operation, old):
        self.check_object(plural, key[1], new, key[2])
        if old is not None and plural == "secrets" and new.get("type") != old.get("type"):
            raise ApiError(422, "Invalid", 'Secret "%s" is invalid: type: Invalid value: field is immutable' % key[2], key[2], plural)
        self.validate(plural, key, new, old)
        before = fields_of(old or {})
        obj = self.store._put(plural, key[1], new, manager, operation)
        owners = self.store.owners.setdefault(key, {})
        after = fields_of(obj)
        for f in set(before) - set(after):
            owners.pop(f, None)
        if operation == "Update":  # an apply sets its own owners
            for f, v in after.items():
                if before.get(f) != v or f not in owners:
                    owners[f] = manager
        if plural == "secrets" and obj.get("type") == BOOTSTRAP_TYPE:
            self.store.schedule_sign()
        if plural == "deployments" and (old is None or
                                        old["metadata"].get("generation") != obj["metadata"]["generation"]):
            self.store.schedule_deploy(key[1], key[2])
        if plural in ("persistentvolumes", "persistentvolumeclaims"):
            self.store.bind_volumes()
            obj = self.store.objs[key]
        return obj

    def validate(self, plural, key, new, old):
        """What the API's validation and defaulting do for the new kinds,
        the parts a client can get wrong: required fields, immutable
        fields, server-set fields. Writes through the API never set status
        (the simulated controllers do), and keep the live one."""
        name = key[2]
        kind = RESOURCES[plural][0]
        what = '%s%s "%s" is invalid: ' % (kind, ".apps" if plural == "deployments" else "", name)
        if plural not in ("persistentvolumes", "persistentvolumeclaims", "services", "deployments"):
            return
        spec = new.get("spec")
        if not isinstance(spec, dict):
            raise ApiError(422, "Invalid", what + "spec: Required value", name, plural)
        new["status"] = copy.deepcopy((old or {}).get("status") or {})
        ospec = (old or {}).get("spec")
        if plural == "persistentvolumes":
            if not isinstance(spec.get("capacity"), dict) or "storage" not in spec["capacity"]:
                raise ApiError(422, "Invalid", what + "spec.capacity: Required value", name, plural)
            if not spec.get("accessModes"):
                raise ApiError(422, "Invalid", what + "spec.accessModes: Required value", name, plural)
            nfs = spec.get("nfs")
            if not isinstance(nfs, dict) or not nfs.get("server") or not str(nfs.get("path", "")).startswith("/"):
                raise ApiError(422, "Invalid", what + "spec.nfs: Required value: server and an absolute path (the only volume source simulated)", name, plural)
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            spec.setdefault("volumeMode", "Filesystem")
            if ospec is not None:
                if ospec.get("nfs") != spec.get("nfs"):
                    raise ApiError(422, "Invalid", what + "spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation", name, plural)
                if "claimRef" not in spec and "claimRef" in ospec:
                    spec["claimRef"] = ospec["claimRef"]  # set by the binder, not by the writer
        elif plural == "persistentvolumeclaims":
            req = (spec.get("resources") or {}).get("requests") or {}
            if "storage" not in req:
                raise ApiError(422, "Invalid", what + "spec.resources[storage]: Required value", name, plural)
            if not spec.get("accessModes"):
                raise ApiError(422, "Invalid", what + "spec.accessModes: Required value", name, plural)
            spec.setdefault("volumeMode", "Filesystem")
            if ospec is not None:
                strip = lambda x: {k: v for k, v in x.items() if k != "resources"}
                if strip(ospec) != strip(spec):
                    raise ApiError(422, "Invalid", what + "spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims", name, plural)
        elif plural == "services":
            spec.setdefault("type", "ClusterIP")
            ports = spec.get("ports")
            if not isinstance(ports, list) or not ports:
                raise ApiError(422, "Invalid", what + "spec.ports: Required value", name, plural)
            for i, p in enumerate(ports):
                if not isinstance(p, dict) or not isinstance(p.get("port"), int):
                    raise ApiError(422, "Invalid", what + "spec.ports[%d].port: Required value" % i, name, plural)
                if len(ports) > 1 and not p.get("name"):
                    raise ApiError(422, "Invalid", what + "spec.ports[%d].name: Required value" % i, name, plural)
                p.setdefault("protocol", "TCP")
                p.setdefault("targetPort", p["port"])
            oip = (ospec or {}).get("clusterIP")
            if oip and spec.get("clusterIP") not in (None, oip):
                raise ApiError(422, "Invalid", what + "spec.clusterIPs[0]: Invalid value: field is immutable", name, plural)
            if oip:
                spec["clusterIP"] = oip
            elif not spec.get("clusterIP"):
                st = self.store
                spec["clusterIP"] = "10.96.%d.%d" % (st.next_ip // 250, st.next_ip % 250 + 1)
                st.next_ip += 1
            spec["clusterIPs"] = [spec["clusterIP"]]
            new["status"] = new["status"] or {"loadBalancer": {}}
        elif plural == "deployments":
            sel = (spec.get("selector") or {}).get("matchLabels")
            if not isinstance(sel, dict) or not sel:
                raise ApiError(422, "Invalid", what + "spec.selector: Required value", name, plural)
            tl = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if any(tl.get(k) != v for k, v in sel.items()):
                raise ApiError(422, "Invalid", what + "spec.template.metadata.labels: Invalid value: %s: `selector` does not match template `labels`" % json.dumps(tl), name, plural)
            cs = ((spec.get("template") or {}).get("spec") or {}).get("containers")
            if not isinstance(cs, list) or not cs or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in cs):
                raise ApiError(422, "Invalid", what + "spec.template.spec.containers: Required value: each with a name and an image", name, plural)
            r = spec.setdefault("replicas", 1)
            if not isinstance(r, int) or r < 0:
                raise ApiError(422, "Invalid", what + "spec.replicas: Invalid value: must be a non-negative integer", name, plural)
            if ospec is not None and ospec.get("selector") != spec.get("selector"):
                raise ApiError(422, "Invalid", what + "spec.selector: Invalid value: field is immutable", name, plural)
            # metadata.generation: 1 at creation, one more on every change of spec.
            gen = (old or {}).get("metadata", {}).get("generation", 0)
            new["metadata"]["generation"] = gen + 1 if ospec != spec else gen

    def create(self, plural, ns, q, body):
        obj = self.decode(body)
        self.check_object(plural, ns, obj)
        name = obj["metadata"]["name"]
        key = (plural, ns, name)
        if key in self.store.objs:
            raise ApiError(409, "AlreadyExists", '%s "%s" already exists' % (plural, name), name, plural)
        if plural == "nodes":
            obj.setdefault("status", {}).setdefault("conditions", [
                {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "kubelet is posting ready status", "lastHeartbeatTime": now_rfc3339()}])
        return 201, self.write(plural, key, obj, q.get("fieldManager", "unknown"), "Update", None)

    def apply(self, plural, key, obj, q, body):
        manager = q.get("fieldManager")
        if not manager:
            raise ApiError(422, "Invalid", "PATCH with apply-patch requires a fieldManager")
        applied = self.decode(body)
        if key[2] != (applied.get("metadata") or {}).get("name"):
            raise ApiError(400, "BadRequest", "the name of the object does not match the name on the URL")
        if plural == "secrets" and isinstance(applied.get("stringData"), dict):
            applied.setdefault("data", {})
            applied["data"] = dict(applied["data"] or {})
            for k, v in applied.pop("stringData").items():
                applied["data"][k] = base64.b64encode(str(v).encode()).decode()
        st = self.store
        owners = st.owners.get(key, {})
        want = fields_of(applied)
        live = fields_of(obj or {})
        # A field another manager owns and this apply would change is a
        # conflict, unless the apply is forced (then ownership moves).
        conflicts = sorted(f for f, v in want.items()
                           if f in live and live[f] != v and owners.get(f) not in (None, manager))
        if conflicts and q.get("force") != "true":
            raise ApiError(409, "Conflict", "Apply failed with %d conflict%s: %s" % (
                len(conflicts), "" if len(conflicts) == 1 else "s",
                "; ".join('conflict with "%s": %s' % (owners[f], fpath(f)) for f in conflicts)),
                key[2], plural,
                [{"type": "FieldManagerConflict", "message": 'conflict with "%s"' % owners[f],
                  "field": fpath(f)} for f in conflicts])
        if obj is None:
            new = applied
            code = 201
        else:
            new = merge_patch(copy.deepcopy(obj), applied)
            # What this manager applied before and leaves out now goes,
            # unless the leaf is now inside something it applies (a map
            # that became a list or a scalar).
            for f in [f for f, m in owners.items() if m == manager and f not in want]:
                if not any(f[:i] in want for i in range(1, len(f))):
                    remove_path(new, f)
            code = 200
        out = self.write(plural, key, new, manager, "Apply", obj)
        owners = st.owners.setdefault(key, {})
        for f in want:
            owners[f] = manager
        return code, out

    def filtered(self, plural, ns, q):
        reqs = parse_selector(q.get("labelSelector", ""))
        fields = parse_selector(q.get("fieldSelector", ""))
        out = []
        for (p, ons, name), o in sorted(self.store.objs.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])):
            if p != plural or (ns is not None and ons != ns):
                continue
            if not selector_matches(reqs, o["metadata"].get("labels") or {}):
                continue
            fvals = {"metadata.name": name, "metadata.namespace": ons or ""}
            if plural == "secrets":
                fvals["type"] = o.get("type", "")
            if not selector_matches(fields, fvals):
                continue
            out.append(o)
        return out

    def list(self, plural, ns, q):
        return self.maybe_table(plural, self.filtered(plural, ns, q))

    def wants_table(self):
        accept = self.headers.get("Accept") or ""
        return "as=Table" in accept

    def maybe_table(self, plural, items, single=False):
        kind = RESOURCES[plural][0]
        if not self.wants_table():
            if single:
                return items[0]
            return {"kind": kind + "List", "apiVersion": RESOURCES[plural][3],
                    "metadata": {"resourceVersion": str(self.store.rv)}, "items": items}
        cols = [{"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0}]
        if plural == "secrets":
            cols += [{"name": "Type", "type": "string", "format": "", "description": "Type", "priority": 0},
                     {"name": "Data", "type": "string", "format": "", "description": "Data", "priority": 0}]
        elif plural == "configmaps":
            cols += [{"name": "Data", "type": "string", "format": "", "description": "Data", "priority": 0}]
        elif plural == "nodes":
            cols += [{"name": "Status", "type": "string", "format": "", "description": "Status", "priority": 0}]
        else:
            cols += [{"name": n, "type": "string", "format": "", "description": n, "priority": 0}
                     for n in TABLE_COLUMNS.get(plural, [])]
        cols += [{"name": "Age", "type": "string", "format": "", "description": "Age", "priority": 0}]
        rows = []
        for o in items:
            age = "%ds" % max(0, int(time.time() - (parse_rfc3339(o["metadata"]["creationTimestamp"]) or 0)))
            cells = [o["metadata"]["name"]]
            if plural == "secrets":
                cells += [o.get("type", "Opaque"), len(o.get("data") or {})]
            elif plural == "configmaps":
                cells += [len(o.get("data") or {})]
            elif plural == "nodes":
                ready = [c for c in (o.get("status") or {}).get("conditions", []) if c.get("type") == "Ready"]
                cells += ["Ready" if ready and ready[0].get("status") == "True" else "NotReady"]
            elif plural in TABLE_COLUMNS:
                cells += table_cells(plural, o)
            cells.append(age)
            meta = {k: v for k, v in o["metadata"].items() if k != "managedFields"}
            rows.append({"cells": cells, "object": {"kind": "PartialObjectMetadata",
                                                   "apiVersion": "meta.k8s.io/v1", "metadata": meta}})
        return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": str(self.store.rv)},
                "columnDefinitions": cols, "rows": rows}


TABLE_COLUMNS = {
    "deployments": ["Ready", "Up-to-date", "Available"],
    "services": ["Type", "Cluster-IP", "External-IP", "Port(s)"],
    "persistentvolumeclaims": ["Status", "Volume", "Capacity", "Access Modes", "StorageClass"],
    "persistentvolumes": ["Capacity", "Access Modes", "Reclaim Policy", "Status", "Claim", "StorageClass"],
}
MODES = {"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}


def table_cells(plural, o):
    """The cells kubectl's table printer shows for the new kinds."""
    spec, st = o.get("spec") or {}, o.get("status") or {}
    modes = ",".join(MODES.get(m, m) for m in spec.get("accessModes", []))
    if plural == "deployments":
        return ["%d/%d" % (st.get("readyReplicas", 0), spec.get("replicas", 1)),
                st.get("updatedReplicas", 0), st.get("availableReplicas", 0)]
    if plural == "services":
        return [spec.get("type", "ClusterIP"), spec.get("clusterIP", "None"), "<none>",
                ",".join("%s/%s" % (p.get("port"), p.get("protocol", "TCP")) for p in spec.get("ports", []))]
    if plural == "persistentvolumeclaims":
        return [st.get("phase", "Pending"), spec.get("volumeName", ""),
                (st.get("capacity") or {}).get("storage", ""), modes if st.get("phase") == "Bound" else "",
                spec.get("storageClassName") or "<unset>"]
    ref = spec.get("claimRef")
    return [(spec.get("capacity") or {}).get("storage", ""), modes,
            spec.get("persistentVolumeReclaimPolicy", "Retain"), st.get("phase", "Available"),
            "%s/%s" % (ref.get("namespace"), ref.get("name")) if ref else "",
            spec.get("storageClassName") or "<unset>"]


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cert", required=True, help="server certificate PEM")
    ap.add_argument("--key", required=True, help="server key PEM")
    ap.add_argument("--ca", required=True, help="CA that signs client certificates (and is published in cluster-info)")
    ap.add_argument("--jws-delay-ms", type=int, default=200, help="bootstrapsigner delay")
    ap.add_argument("--sweep-ms", type=int, default=200, help="tokencleaner period")
    ap.add_argument("--deploy-ready-ms", type=int, default=200,
                    help="SIMULATED deployment controller: delay before a Deployment reports ready")
    ap.add_argument("--enable-bootstrap-token-auth", action="store_true",
                    help="accept live bootstrap tokens as bearer tokens (kube-apiserver's flag)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.load_verify_locations(args.ca)
    ctx.verify_mode = ssl.CERT_OPTIONAL  # no certificate: a 401 Status, as the API server
    ctx.set_alpn_protocols(["http/1.1"])

    store = Store(args)
    srv = Server(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.store = store
    srv.args = args
    store.port = srv.server_address[1]

    with open(args.ca, "rb") as f:
        ca_pem = f.read()
    kubeconfig = ("apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n"
                  "    certificate-authority-data: %s\n    server: https://127.0.0.1:%d\n"
                  "contexts: null\ncurrent-context: \"\"\npreferences: {}\nusers: null\n"
                  % (base64.b64encode(ca_pem).decode(), store.port))
    with store.lock:
        store._put("configmaps", "kube-public", {"apiVersion": "v1", "kind": "ConfigMap",
                                                  "metadata": {"name": "cluster-info"},
                                                  "data": {"kubeconfig": kubeconfig}}, "kubeadm")

    stop = threading.Event()

    def sweeper():
        while not stop.wait(args.sweep_ms / 1000.0):
            store.sweep()

    def stdin_watch():
        # os.read, not sys.stdin: a buffered reader blocked here would
        # hold its lock when the interpreter shuts down after a SIGTERM.
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    threading.Thread(target=sweeper, daemon=True).start()
    threading.Thread(target=stdin_watch, daemon=True).start()
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    print(store.port, flush=True)
    while not stop.wait(0.5):
        pass
    srv.shutdown()
    srv.server_close()
    sys.stdout.flush()
    os._exit(0)  # daemon threads (stdin, timers) need no goodbye


if __name__ == "__main__":
    main()
