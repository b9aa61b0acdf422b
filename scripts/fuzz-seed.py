"""Seeds a fresh Berth server for API fuzzing (scripts/fuzz-api.sh) with something real
for every kind of answer: clusters (a Kubernetes one behind the fake API server, with
an inline kubeconfig, and an unreachable local one), environments (qa, and production
that requires what qa verified), a team with a developer, an application with a secret and a build (and one to delete),
a deployment that succeeded in qa and its promotion to production (so provenance has
something to show), and a token of a second user.

    python3 scripts/fuzz-seed.py API_URL ADMIN_TOKEN KUBECONFIG_PATH

Exits non-zero on any unexpected answer.
"""

import json
import sys
import time
import urllib.error
import urllib.request

api, token, kubeconfig_path = sys.argv[1], sys.argv[2], sys.argv[3]


def call(method, path, body=None, expect=(200, 201), bearer=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{api}/api/v1{path}", data=data, method=method)
    req.add_header("Authorization", f"Bearer {bearer or token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as answer:
            status, text = answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    if status not in expect:
        sys.exit(f"seed: {method} {path} answered {status}: {text}")
    return json.loads(text) if text else None


def doc(kind, name, spec):
    return {"apiVersion": "berth.dev/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def wait_phase(deployment, phase, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        d = call("GET", f"/deployments/{deployment}")
        current = (d.get("status") or {}).get("phase")
        if current == phase:
            return d
        if current in ("Failed", "Superseded") and current != phase:
            sys.exit(f"seed: deployment {deployment} ended {current}: {json.dumps(d)}")
        time.sleep(0.2)
    sys.exit(f"seed: deployment {deployment} did not reach {phase} in {seconds}s")


with open(kubeconfig_path) as f:
    kubeconfig = f.read()

call("PUT", "/clusters/k8s", doc("Cluster", "k8s", {
    "runtime": "kubernetes", "datacenter": "east",
    "kubernetes": {"kubeconfig": {"inline": kubeconfig}, "context": "fake"}}))
call("PUT", "/clusters/local", doc("Cluster", "local", {
    "local": {"endpoint": "unix:///nonexistent.sock"}}))
call("PUT", "/environments/qa", doc("Environment", "qa", {
    "clusters": [{"cluster": "k8s"}], "rollout": {"progressDeadlineSeconds": 60}}))
call("PUT", "/environments/production", doc("Environment", "production", {
    "clusters": [{"cluster": "k8s"}], "production": True,
    "policies": {"requireVerifiedIn": ["qa"]}}))
call("PUT", "/environments/dev", doc("Environment", "dev", {
    "clusters": [{"cluster": "local"}]}))
call("PUT", "/users/dev", doc("User", "dev", {}))
call("PUT", "/teams/pay", doc("Team", "pay", {
    "members": [{"user": "admin", "roles": ["admin"]}, {"user": "dev", "roles": ["developer"]}]}))
call("PUT", "/applications/web", doc("Application", "web", {
    "image": "127.0.0.1:5000/busybox:latest", "team": "pay", "replicas": 1,
    "healthCheck": {"path": "/healthz"}, "resources": {"memory": "64Mi"},
    "source": {"builder": "image"}}))
call("PUT", "/applications/scratch", doc("Application", "scratch", {
    "image": "127.0.0.1:5000/busybox:latest", "team": "pay"}))
call("PUT", "/applications/web/secrets/db", {"value": "fuzz-seed-secret"})

call("POST", "/applications/web/builds", {})
deadline = time.monotonic() + 60
while (call("GET", "/applications/web/builds/1").get("status") or {}).get("phase") != "Succeeded":
    if time.monotonic() > deadline:
        sys.exit(f"seed: build web-build-1 did not succeed: {call('GET', '/applications/web/builds/1')}")
    time.sleep(0.2)
qa = call("POST", "/applications/web/deploy", {"environment": "qa"})
wait_phase(qa["metadata"]["name"], "Succeeded")
production = call("POST", "/applications/web/promote", {"from": "qa", "to": "production"})
wait_phase(production["metadata"]["name"], "Succeeded")

call("POST", "/tokens", {"user": "dev", "name": "fuzz"})
print("seeded: clusters k8s and local, qa/production/dev, team pay, applications web "
      "(secret db) and scratch (for deletes), deployed to qa and promoted to production")
