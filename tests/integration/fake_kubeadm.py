#!/usr/bin/python3
"""fake_kubeadm.py - what `kubeadm join` does with a bootstrap token, against
the Kubernetes API stand-in (tests/kube/kube_api_standin.py), for the join
tests. Installed on the test's PATH as `kubeadm`.

  kubeadm join HOST:PORT --token ID.SECRET --discovery-token-ca-cert-hash sha256:HEX
               --node-name NAME

Like kubeadm's token discovery it
  1. reads cluster-info from kube-public with the token (bearer auth, TLS not
     yet trusted), and checks the jws-kubeconfig-ID signature with the token;
  2. checks that the CA in that kubeconfig hashes to the pin it was given
     (SHA-256 of the CA certificate's SubjectPublicKeyInfo, via openssl);
and then, where the kubelet's TLS bootstrap would get a certificate, it
registers the Node with the administrator's client certificate from
FAKE_KUBEADM_PKI (the stand-in does not model CSRs).

Test hooks (environment): FAKE_KUBEADM_GATE=FILE waits (polling, up to 60 s)
until FILE exists before registering, so a test can act mid-join;
FAKE_KUBEADM_SEEN=FILE records the token it was given, so the test can
check no log holds it; FAKE_KUBEADM_FAIL=1 exits 1 after discovery.
"""
import base64
import hashlib
import hmac
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request


def die(msg):
    print("kubeadm (fake): " + msg, file=sys.stderr)
    sys.exit(1)


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main(argv):
    if len(argv) < 3 or argv[1] != "join":
        die("usage: kubeadm join HOST:PORT --token T --discovery-token-ca-cert-hash H --node-name N")
    server = argv[2]
    opts = {}
    i = 3
    while i + 1 < len(argv):
        opts[argv[i]] = argv[i + 1]
        i += 2
    token = opts.get("--token", "")
    pin = opts.get("--discovery-token-ca-cert-hash", "")
    name = opts.get("--node-name", "")
    if not (token and pin and name) or "." not in token:
        die("missing --token, --discovery-token-ca-cert-hash or --node-name")
    seen = os.environ.get("FAKE_KUBEADM_SEEN")
    if seen:
        with open(seen, "w") as f:
            f.write(token + "\n")
    tid, secret = token.split(".", 1)

    # 1. discovery with the token, TLS not trusted yet (as kubeadm)
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(
        "https://%s/api/v1/namespaces/kube-public/configmaps/cluster-info" % server,
        headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, context=insecure, timeout=10) as r:
            cm = json.load(r)
    except Exception as e:  # noqa: BLE001 - any failure is a failed join
        die("cannot read cluster-info with the token: %s" % e)
    data = cm.get("data", {})
    kubeconfig = data.get("kubeconfig", "")
    jws = data.get("jws-kubeconfig-" + tid)
    if not jws:
        die("cluster-info has no signature for token %s" % tid)
    head, _, sig = jws.partition("..")
    mac = hmac.new(token.encode(), (head + "." + b64url(kubeconfig.encode())).encode(), hashlib.sha256)
    if not hmac.compare_digest(b64url(mac.digest()), sig):
        die("the cluster-info signature does not verify with the token")

    # 2. the CA pin
    ca_b64 = ""
    for line in kubeconfig.splitlines():
        line = line.strip()
        if line.startswith("certificate-authority-data:"):
            ca_b64 = line.split(":", 1)[1].strip()
    if not ca_b64:
        die("cluster-info's kubeconfig has no certificate-authority-data")
    ca_pem = base64.b64decode(ca_b64)
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=ca_pem,
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, check=True).stdout
    if pin != "sha256:" + hashlib.sha256(der).hexdigest():
        die("the CA does not match --discovery-token-ca-cert-hash")
    if os.environ.get("FAKE_KUBEADM_FAIL") == "1":
        die("failing on purpose (FAKE_KUBEADM_FAIL)")

    gate = os.environ.get("FAKE_KUBEADM_GATE")
    if gate:
        end = time.monotonic() + 60
        while not os.path.exists(gate):
            if time.monotonic() > end:
                die("gave up waiting for " + gate)
            time.sleep(0.1)

    # 3. where the kubelet's TLS bootstrap would be: register the Node
    pki = os.environ.get("FAKE_KUBEADM_PKI", "")
    trusted = ssl.create_default_context(cadata=ca_pem.decode())
    trusted.check_hostname = False
    trusted.load_cert_chain(os.path.join(pki, "client.pem"), os.path.join(pki, "client.key"))
    body = json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}).encode()
    req = urllib.request.Request("https://%s/api/v1/nodes" % server, data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=trusted, timeout=10):
            pass
    except Exception as e:  # noqa: BLE001
        die("cannot register node %s: %s" % (name, e))
    print("This node has joined the cluster (fake kubeadm): %s" % name)


if __name__ == "__main__":
    main(sys.argv)
