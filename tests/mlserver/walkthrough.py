#!/usr/bin/env python3
"""A first user's walkthrough with two real MLServer models, checked step by step.

Usage: python tests/mlserver/walkthrough.py path/to/switchyard

Needs `mlserver`, `mlserver-sklearn` and `scikit-learn` (.ci/run installs them into .venv).
What an operator does with switchyard in front of two iris models (a logistic
regression as the stable, a decision tree as the candidate), and what it must show:

1. shadow: the tree answers mirrored copies only; its labelled answers are scored
   against the same labels as the stable's (the accuracy drop judged on pairs) and no
   user gets one of its answers;
2. canary: half the users, with every request still mirrored;
3. drift: petal_length scaled by 1.5 from the canary's start on. The monitor
   shows it against the reference built from the stable's first requests; the models'
   outputs now differ (output drift), but the labels show the tree more accurate than the
   stable, so `output_drift` does not roll it back and the tree is promoted;
4. a step edit after the promotion (a hold changed, and the reload applied): the route
   stays promoted and every user stays on the tree;
5. a second route (model `setosa`, the stable only) is served by its own rollout,
   untouched by the first.

It prints `walkthrough: P passed, F failed` last and exits non-zero on any failure.
"""

import os
import sys
import time

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.tree import DecisionTreeClassifier

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402 -- the shared helpers: processes, HTTP, MLServer folders, checks
from e2e import check, free_port, http, iris_body, start, wait_until  # noqa: E402

MODEL = "iris"
SECOND = "setosa"
STABLE, CANDIDATE = "lr", "tree"
DRIFTED = 2  # petal_length's column
PHASE_WAIT = 240.0  # seconds for the rollout to reach a phase while traffic flows


def log(msg):
    print(f"walkthrough: {msg}", flush=True)


def only(columns, model):
    """`model` reading some of the 4 iris columns, as one scikit-learn pipeline (so the
    file MLServer loads names scikit-learn classes only)."""
    pick = ColumnTransformer([("pick", "passthrough", columns)])
    return make_pipeline(pick, model)


def train():
    """The stable: a logistic regression on petal_length alone; the candidate: a depth-3
    tree on the sepals and petal_width, which keeps its accuracy when petal_length drifts.
    Both about as accurate on clean data."""
    data = load_iris()
    X, y = data.data, data.target
    lr = only([DRIFTED], LogisticRegression(max_iter=1000)).fit(X, y)
    tree = only([0, 1, 3], DecisionTreeClassifier(max_depth=3, random_state=0)).fit(X, y)
    return lr, tree, X, y


def config(ports, servers, hold="2s", canary="10s"):
    features = "\n".join(
        f"          - {{ name: {f}, input: input-0, column: {c} }}"
        for c, f in enumerate(("sepal_length", "sepal_width", "petal_length", "petal_width"))
    )
    return f"""# written by tests/mlserver/walkthrough.py
listen: 127.0.0.1:{ports['listen']}
admin:
  listen: 127.0.0.1:{ports['admin']}
backends:
  {STABLE}: {{ url: {servers[STABLE]}, timeout: 10s }}
  {CANDIDATE}: {{ url: {servers[CANDIDATE]}, timeout: 10s }}
routes:
  - name: {MODEL}
    match: {{ model: {MODEL} }}
    rollout:
      stable: {STABLE}
      candidate: {CANDIDATE}
      steps:
        - {{ weight: 0, mirror: 100, hold: {hold} }}
        - {{ weight: 50, mirror: 100, hold: {canary} }}
        - {{ weight: 100 }}
      analysis:
        interval: 500ms
        window: 30s
        min_samples: 30
        failure_limit: 2
        max_client_share: 1
        gates:
          error_rate: {{ max: 0.05 }}
          accuracy: {{ min: 0.8, max_drop: 0.1 }}
          output_drift: {{ max: 0.2 }}
        after_promotion: 2s
    shadow: {{ max_in_flight: 256, compare: {{ protocol: v2, ignore: [/id, /model_version] }} }}
    monitor:
      sample: 100
      reference: {{ from: stable, requests: 200 }}
      features:
{features}
    feedback: {{ retain: 10m }}
  - name: {SECOND}
    match: {{ model: {SECOND} }}
    rollout: {{ stable: {STABLE} }}
state: {{ path: null }}
"""


class Traffic:
    """Users sending iris rows (drifted once `drift` is set) and posting the true class."""

    def __init__(self, proxy, admin, X, y, rng):
        self.proxy, self.admin, self.X, self.y, self.rng = proxy, admin, X, y, rng
        self.n = 0
        self.drift = False
        self.variants = {}
        self.failed = 0
        self.pending = []
        self.this_round = {}
        # Answers users got in rounds wholly inside the shadow step (the status after the
        # round still said step 0).
        self.in_shadow = {}
        # The output drift gate's detail when the labels excused a drift over its max.
        self.excused = None

    def round(self, k=20):
        self.this_round = {}
        for _ in range(k):
            i = self.rng.integers(len(self.X))
            row = self.X[i] + self.rng.normal(0, 0.05, 4)
            if self.drift:
                row[DRIFTED] *= 1.5
            self.n += 1
            rid = f"walk-{self.n}"
            st, hdrs, _ = http("POST", f"{self.proxy}/v2/models/{MODEL}/infer", iris_body(row),
                               headers={"x-request-id": rid, "x-user-id": f"u{self.n % 97}"})
            if st != 200:
                self.failed += 1
                continue
            v = hdrs.get("x-switchyard-variant")
            self.variants[v] = self.variants.get(v, 0) + 1
            self.this_round[v] = self.this_round.get(v, 0) + 1
            self.pending.append({"request_id": rid, "label": int(self.y[i])})
        # Labels for the previous round: their predictions have been remembered by now.
        if self.pending:
            http("POST", f"{self.admin}/api/v1/feedback", {"feedback": self.pending})
            self.pending = []

    def until(self, what, done, procs):
        deadline = time.monotonic() + PHASE_WAIT
        while time.monotonic() < deadline:
            self.round()
            s = status(self.admin)
            drift = gate(s, "output_drift")
            if "not failed: labels show" in drift.get("detail", ""):
                self.excused = drift["detail"]
            if s["phase"] == "progressing" and s["step"] == 0:
                for v, n in self.this_round.items():
                    self.in_shadow[v] = self.in_shadow.get(v, 0) + n
            if done(s):
                return s
            for p, name, _ in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited while waiting for {what}")
        raise RuntimeError(f"timed out waiting for {what}: {status(self.admin)}")


def status(admin, route=MODEL):
    import json

    return json.loads(http("GET", f"{admin}/api/v1/routes/{route}/status")[2])


def monitor(admin):
    import json

    return json.loads(http("GET", f"{admin}/api/v1/routes/{MODEL}/monitor")[2])


def gate(s, name):
    for g in (s.get("analysis", {}).get("last") or {}).get("gates", []):
        if g["gate"] == name:
            return g
    return {}


def run(binary, tmp, procs):
    rng = np.random.default_rng(11)
    lr, tree, X, y = train()
    env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_ADMIN_TOKEN"}
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    ports = {k: free_port() for k in ("listen", "admin", "a_http", "a_grpc", "a_metrics",
                                      "b_http", "b_grpc", "b_metrics")}
    served = {STABLE: [(MODEL, lr), (SECOND, lr)], CANDIDATE: [(MODEL, tree)]}
    servers = {}
    for key, name in (("a", STABLE), ("b", CANDIDATE)):
        d = e2e.write_server_dir(tmp, name, served[name], ports[f"{key}_http"],
                                 ports[f"{key}_grpc"], ports[f"{key}_metrics"])
        logpath = os.path.join(tmp, f"{name}.log")
        p = start([os.path.join(bindir, "mlserver"), "start", d], logpath, cwd=d, env=env)
        procs.append((p, name, logpath))
        servers[name] = f"http://127.0.0.1:{ports[key + '_http']}"
    for name in (STABLE, CANDIDATE):
        proc = next(p for p, n, _ in procs if n == name)
        wait_until(f"{name} ready",
                   lambda: all(http("GET", f"{servers[name]}/v2/models/{m}/ready", timeout=2)[0] == 200
                               for m, _ in served[name]),
                   e2e.READY_WAIT, procs=[(proc, name)])
    log("both MLServer instances ready")

    cfg = os.path.join(tmp, "switchyard.yaml")
    with open(cfg, "w") as f:
        f.write(config(ports, servers))
    out = os.popen(f"'{binary}' validate -c '{cfg}'").read()
    check("switchyard validate says ok", out.strip().endswith("ok"), out)
    logpath = os.path.join(tmp, "switchyard.log")
    syd = start([binary, "run", "-c", cfg], logpath, env=env)
    procs.append((syd, "switchyard", logpath))
    admin, proxy = f"http://127.0.0.1:{ports['admin']}", f"http://127.0.0.1:{ports['listen']}"
    wait_until("switchyard ready", lambda: http("GET", f"{admin}/readyz", timeout=2)[0] == 200,
               30, procs=[(syd, "switchyard")])
    t = Traffic(proxy, admin, X, y, rng)
    pr = list(procs)

    # 1. Shadow: the tree only answers copies, and is judged on pairs before any user.
    s = t.until("the shadow step to pass", lambda s: s["step"] >= 1 or s["phase"] != "progressing", pr)
    check("the shadow step passed on its gates", s["phase"] == "progressing" and s["step"] == 1, str(s)[:400])
    check("no user got the tree's answer in the shadow step",
          t.in_shadow.get(STABLE, 0) > 0 and t.in_shadow.get(CANDIDATE, 0) == 0, str(t.in_shadow))
    events = [e["message"] for e in s["events"] if e["kind"] == "step"]
    check("the step event says the analysis passed", any("analysis passed" in m for m in events), str(events))

    # 2-3. Canary, with drift from its start: the stable's answers move with petal_length,
    # the tree's do not.
    t.drift = True
    log("petal_length × 1.5 from now on")
    s = t.until("the promotion", lambda s: s["phase"] in ("promoted", "rolled_back"), pr)
    check("the tree is promoted despite the drift", s["phase"] == "promoted", str(s.get("reason")))
    check("an output drift over max was excused by the labels, not failed", t.excused is not None)
    log(f"output drift gate: {t.excused}")
    m = monitor(admin)
    feats = {f["name"]: f for b in m.get("backends", []) if b["backend"] == STABLE for f in b["features"]}
    drift = (feats.get("petal_length") or {}).get("drift") or {}
    check("the monitor shows petal_length drifting against the stable's reference",
          drift.get("level") in ("warn", "alert"), str(drift))
    check("unchanged features stay ok",
          all(((feats.get(f) or {}).get("drift") or {}).get("level") == "ok"
              for f in ("sepal_length", "sepal_width")), str({k: v.get("drift") for k, v in feats.items()}))
    acc = {a["backend"]: a for a in (s.get("monitoring") or {}).get("accuracy", [])}
    log(f"accuracy at promotion: {acc}")
    check("users got no failed answer", t.failed == 0, str(t.failed))

    # Let the post-promotion watch finish.
    s = t.until("the promotion to stand",
                lambda s: any("promotion stands" in e["message"] for e in s["events"]), pr)
    # 4. A step edit after promotion: users stay on the tree.
    gen = s["config"]["generation"]
    with open(cfg, "w") as f:
        f.write(config(ports, servers, hold="1m", canary="1m"))
    s = t.until("the edit applied", lambda s: s["config"]["generation"] > gen, pr)
    t.variants = {}
    for _ in range(5):
        t.round()
    s = status(admin)
    check("after a step edit the route stays promoted", s["phase"] == "promoted" and s["weight"] == 100.0,
          f"{s['phase']} {s['weight']}")
    check("every user stays on the tree", set(t.variants) == {CANDIDATE}, str(t.variants))

    # 5. The second route: its own rollout (idle), the stable only.
    st, hdrs, _ = http("POST", f"{proxy}/v2/models/{SECOND}/infer", iris_body(X[0]))
    check("the second route answers from its stable",
          st == 200 and hdrs.get("x-switchyard-route") == SECOND and hdrs.get("x-switchyard-variant") == STABLE,
          f"{st} {dict(hdrs)}")
    check("the second route is idle, untouched by the first", status(admin, SECOND)["phase"] == "idle")


def main():
    return e2e.main_of(run, "walkthrough", "walkthrough.py")


if __name__ == "__main__":
    sys.exit(main())
