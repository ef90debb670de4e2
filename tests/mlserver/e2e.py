#!/usr/bin/env python3
"""End-to-end shadow comparison, prediction log and drift against real MLServer.

Usage: python tests/mlserver/e2e.py path/to/switchyard

Needs the `mlserver`, `mlserver-sklearn` and `scikit-learn` packages (.ci/run
installs them into .venv). The script:

1. trains two different small scikit-learn classifiers (fixed seeds) and
   serves each with its own `mlserver start` under the same model name `clf`;
   instance A also serves `iris`, a logistic regression on scikit-learn's
   bundled iris data (each instance's folder holds one directory per model);
2. starts switchyard with two routes: `default` (model `clf`) with A as stable
   and B as candidate, in a shadow step (weight 0, mirror 100, manual hold),
   comparing with `protocol: v2`, tight tolerances and NO ignore pointers --
   MLServer's random top-level `id` must not count as a difference by the v2
   comparator's own rules -- and capturing every request with the inputs'
   data redacted; and `iris` (model `iris`, A only), monitoring the four iris
   features with a reference built from its first 150 requests;
3. sends N inference requests through switchyard, and the same requests to A
   and B directly, and computes the expected agreement from the direct
   answers;
4. checks that switchyard's `switchyard_shadow_comparisons_total` counters
   equal the expected agree / disagree counts (and nothing incomparable), and
   that `/api/v1/shadow/diffs` never blames `/id`;
5. checks the capture directory: exactly N records of the route, their request
   ids the `x-request-id`s sent, every request redacted (no input value as
   sent appears in any file), `response` the stable's real V2 answer (the one
   the client got) and `shadow` the candidate's, both status 200;
6. sends the 150 iris rows through switchyard (the reference), then the same
   rows twice in other orders with petal_length shifted by +3.0 (a drift figure
   is given from 200 values), and checks
   `/api/v1/routes/iris/monitor`: the reference is in use and built from 150
   requests, the three unchanged features drift by a PSI under 0.05 (level
   `ok`), petal_length by a PSI over 0.2 (level `alert`), and /metrics shows
   that figure as `switchyard_feature_drift`.

It logs the capture counts and each iris feature's drift figure, prints
`mlserver-e2e: P passed, F failed` last and exits non-zero on any failure.
Every process it starts runs in its own process group and is killed on the
way out.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import joblib
import numpy as np
from sklearn.datasets import load_iris, make_classification
from sklearn.linear_model import LogisticRegression

MODEL = "clf"
N = 200  # requests sent through switchyard
ABS_TOL = 1e-9
REL_TOL = 1e-9
READY_WAIT = 120.0  # seconds for each MLServer to become ready
COUNT_WAIT = 60.0  # seconds for switchyard to finish its comparisons
STABLE, CANDIDATE = "mlserver-a", "mlserver-b"
CAPTURE_WAIT = 30.0  # seconds for the capture records to be written
IRIS = "iris"  # the second model, served by A only, on a monitored route
IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")
IRIS_SHIFTED = "petal_length"  # moved by IRIS_SHIFT in the second pass, nothing else
IRIS_SHIFT = 3.0
MONITOR_WAIT = 30.0  # seconds for the monitor to take in what was sent

checks = {"passed": 0, "failed": 0}


def check(name, ok, detail=""):
    if ok:
        checks["passed"] += 1
        print(f"ok   {name}", flush=True)
    else:
        checks["failed"] += 1
        print(f"FAIL {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def log(msg):
    print(f"mlserver-e2e: {msg}", flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=30):
    """Returns (status, headers, body bytes); HTTP errors are answers, not exceptions."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("content-type", "application/json")
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wait_until(what, fn, timeout, procs=()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p, name in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{name} exited with {p.returncode} while waiting for {what}")
        try:
            if fn():
                return
        except OSError as e:  # connection refused, reset, timeout
            last = e
        time.sleep(0.25)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})")


# --- models -----------------------------------------------------------------


def train_models():
    """Two different logistic regressions on one synthetic problem, plus a pool of inputs."""
    X, y = make_classification(
        n_samples=3000,
        n_features=6,
        n_informative=4,
        n_redundant=1,
        class_sep=0.8,
        flip_y=0.05,
        random_state=7,
    )
    a = LogisticRegression(C=1.0, max_iter=1000).fit(X[:600], y[:600])
    b = LogisticRegression(C=0.02, max_iter=1000).fit(X[600:1200], y[600:1200])
    pool = X[1200:]
    return a, b, pool


def train_iris():
    """A logistic regression on the iris data set (bundled with scikit-learn), and its rows."""
    data = load_iris()
    model = LogisticRegression(max_iter=1000).fit(data.data, data.target)
    return model, data.data


def iris_body(row):
    return {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                        "data": [float(v) for v in row]}]}


def pick_inputs(a, b, pool, rng):
    """Builds N request bodies mixing inputs the models agree and disagree on.

    The local predictions only steer the mix so both outcomes occur; the
    expected outcome of each request is computed from the servers' answers.
    """
    pa, pb = a.predict(pool), b.predict(pool)
    same = np.flatnonzero(pa == pb)
    differ = np.flatnonzero(pa != pb)
    if len(differ) < 30 or len(same) < 150:
        raise RuntimeError(f"models too alike or too different: {len(differ)} of {len(pool)} differ")
    rng.shuffle(same)
    rng.shuffle(differ)
    # Far along a direction both models agree on, both saturate: probabilities
    # equal within ABS_TOL but (almost always) not bit for bit.
    direction = a.coef_[0] / np.linalg.norm(a.coef_[0]) + b.coef_[0] / np.linalg.norm(b.coef_[0])
    direction /= np.linalg.norm(direction)

    bodies, kinds = [], []
    si = di = 0
    for i in range(N):
        outputs = None
        if i % 10 == 9:
            # A batch of three rows: agrees only if every row does.
            rows = pool[rng.choice(len(pool), 3, replace=False)]
            kind = "batch of 3 labels"
        elif i % 20 == 4:
            # Probabilities far out on the shared side: agree within tolerance.
            sign = 1.0 if i % 40 == 4 else -1.0
            rows = (pool[same[si]] + sign * 60.0 * direction)[None, :]
            si += 1
            outputs = [{"name": "predict_proba"}]
            kind = "saturated probabilities"
        elif i % 20 == 14:
            # Probabilities of ordinary inputs: two different models disagree.
            rows = pool[same[si]][None, :]
            si += 1
            outputs = [{"name": "predict_proba"}]
            kind = "probabilities"
        elif i % 5 == 2:
            rows = pool[differ[di % len(differ)]][None, :]
            di += 1
            kind = "label (models differ locally)"
        else:
            rows = pool[same[si]][None, :]
            si += 1
            kind = "label (models agree locally)"
        body = {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(rows.shape),
                    "datatype": "FP64",
                    "data": [round(float(v), 6) for v in rows.ravel()],
                }
            ]
        }
        if outputs:
            body["outputs"] = outputs
        bodies.append(body)
        kinds.append(kind)
    return bodies, kinds


def write_server_dir(root, name, models, http_port, grpc_port, metrics_port):
    """One MLServer instance's folder: its settings.json, and a sibling directory per
    model (MLServer loads every model-settings.json under the folder it starts with)."""
    d = os.path.join(root, name)
    os.makedirs(d)
    for model_name, model in models:
        md = os.path.join(d, model_name)
        os.makedirs(md)
        joblib.dump(model, os.path.join(md, "model.joblib"))
        with open(os.path.join(md, "model-settings.json"), "w") as f:
            json.dump(
                {
                    "name": model_name,
                    "implementation": "mlserver_sklearn.SKLearnModel",
                    "parameters": {"uri": "./model.joblib", "version": name},
                },
                f,
            )
    with open(os.path.join(d, "settings.json"), "w") as f:
        json.dump(
            {
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": metrics_port,
                "parallel_workers": 0,
                "debug": False,
            },
            f,
        )
    return d


# --- comparison as the issue defines it ---------------------------------------


def close(x, y):
    if isinstance(x, bool) or isinstance(y, bool) or isinstance(x, str) or isinstance(y, str):
        return x == y
    if x == y:
        return True
    d = abs(x - y)
    return d <= ABS_TOL or d <= REL_TOL * max(abs(x), abs(y))


def flatten(v):
    if isinstance(v, list):
        out = []
        for e in v:
            out.extend(flatten(e))
        return out
    return [v]


def outputs_agree(ra, rb):
    """Same named outputs, datatypes, shapes, parameters, and data within tolerance."""
    oa = {o["name"]: o for o in ra["outputs"]}
    ob = {o["name"]: o for o in rb["outputs"]}
    if oa.keys() != ob.keys():
        return False
    for name, x in oa.items():
        y = ob[name]
        exact = x.get("datatype") in ("BOOL", "BYTES") or str(x.get("datatype")).startswith(("INT", "UINT"))
        if x.get("datatype") != y.get("datatype") or x.get("shape") != y.get("shape"):
            return False
        if x.get("parameters") != y.get("parameters"):
            return False
        dx, dy = flatten(x.get("data")), flatten(y.get("data"))
        if len(dx) != len(dy):
            return False
        if exact and dx != dy:
            return False
        if not all(close(p, q) for p, q in zip(dx, dy)):
            return False
    return True


# --- processes --------------------------------------------------------------


def start(cmd, logpath, cwd=None, env=None):
    f = open(logpath, "wb")
    p = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    f.close()
    return p


def stop(p):
    if p.poll() is not None:
        return
    try:
        os.killpg(p.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(p.pid, signal.SIGKILL)  # the group, in case children outlived the leader
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def tail(path, n=40):
    try:
        with open(path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        return "\n".join(lines[-n:])
    except OSError:
        return "(no log)"


def read_capture(capture_dir):
    """Every capture record in the directory, and each file's text."""
    records, texts = [], {}
    try:
        names = sorted(n for n in os.listdir(capture_dir) if n.startswith("capture-") and n.endswith(".jsonl"))
    except FileNotFoundError:
        return records, texts
    for n in names:
        with open(os.path.join(capture_dir, n), encoding="utf-8") as f:
            text = f.read()
        texts[n] = text
        for line in text.splitlines():
            if line.endswith("}"):  # a line being written is not a record yet
                records.append(json.loads(line))
    return records, texts


def metric_values(admin, name):
    """{labels text: value} of one metric on /metrics."""
    status, _, body = http("GET", f"{admin}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    pat = re.compile(r"^" + re.escape(name) + r"\{([^}]*)\}\s+(\S+)\s*$")
    out = {}
    for line in body.decode().splitlines():
        m = pat.match(line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def shadow_counters(admin):
    status, _, body = http("GET", f"{admin}/metrics")
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    counts = {"agree": 0, "disagree": 0, "incomparable": 0}
    pat = re.compile(r'^switchyard_shadow_comparisons_total\{[^}]*result="(\w+)"[^}]*\}\s+([0-9.e+]+)\s*$')
    for line in body.decode().splitlines():
        m = pat.match(line)
        if m:
            counts[m.group(1)] = counts.get(m.group(1), 0) + int(float(m.group(2)))
    return counts


# --- the test ---------------------------------------------------------------


def run(binary, tmp, procs):
    t0 = time.monotonic()
    rng = np.random.default_rng(11)
    a, b, pool = train_models()
    bodies, kinds = pick_inputs(a, b, pool, rng)

    ports = {}
    for k in ("a_http", "a_grpc", "a_metrics", "b_http", "b_grpc", "b_metrics", "listen", "admin"):
        ports[k] = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SWITCHYARD_ADMIN_TOKEN"}
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    mlserver = os.path.join(bindir, "mlserver")

    iris_model, iris_rows = train_iris()
    served = {"a": [(MODEL, a), (IRIS, iris_model)], "b": [(MODEL, b)]}
    servers = {}
    for key, name in (("a", STABLE), ("b", CANDIDATE)):
        d = write_server_dir(tmp, name, served[key], ports[f"{key}_http"], ports[f"{key}_grpc"],
                             ports[f"{key}_metrics"])
        logpath = os.path.join(tmp, f"{name}.log")
        p = start([mlserver, "start", d], logpath, cwd=d, env=env)
        procs.append((p, name, logpath))
        servers[key] = f"http://127.0.0.1:{ports[key + '_http']}"

    for key, name in (("a", STABLE), ("b", CANDIDATE)):
        proc = next(p for p, n, _ in procs if n == name)
        wait_until(
            f"{name} /v2/health/ready",
            lambda: http("GET", f"{servers[key]}/v2/health/ready", timeout=2)[0] == 200
            and all(http("GET", f"{servers[key]}/v2/models/{m}/ready", timeout=2)[0] == 200
                    for m, _ in served[key]),
            READY_WAIT,
            procs=[(proc, name)],
        )
    log(f"both MLServer instances ready after {time.monotonic() - t0:.1f}s "
        f"(A serves {MODEL} and {IRIS}, B serves {MODEL})")
    capture_dir = os.path.join(tmp, "capture")
    features = "\n".join(
        f"          - {{ name: {f}, input: input-0, column: {c} }}" for c, f in enumerate(IRIS_FEATURES)
    )

    cfg = os.path.join(tmp, "switchyard.yaml")
    with open(cfg, "w") as f:
        f.write(
            f"""# written by tests/mlserver/e2e.py
listen: 127.0.0.1:{ports['listen']}
admin:
  listen: 127.0.0.1:{ports['admin']}
limits:
  max_body: 4MiB
backends:
  {STABLE}:
    url: {servers['a']}
    timeout: 10s
  {CANDIDATE}:
    url: {servers['b']}
    timeout: 10s
routes:
  # Named `default` so the unscoped admin paths (/api/v1/status, ...) address it.
  - name: default
    match: {{ model: {MODEL} }}
    rollout:
      stable: {STABLE}
      candidate: {CANDIDATE}
      strategy: canary
      steps:
        - {{ weight: 0, mirror: 100, hold: manual }}
        - {{ weight: 100 }}
      fallback_to_stable: false
    shadow:
      # Room for every mirror at once: the shadow side runs at a low CPU priority and,
      # on a busy machine, may start none of them until the requests are all sent;
      # at 64 the rest would be dropped (by design, and counted) and go uncompared.
      max_in_flight: {2 * N}
      compare:
        protocol: v2
        # Deliberately no ignore pointers: MLServer's random `id` (and
        # `model_version`, which differs here too) must not count by the v2
        # comparator's own rules.
        ignore: []
        abs_tolerance: {ABS_TOL!r}
        rel_tolerance: {REL_TOL!r}
    capture:
      path: {json.dumps(capture_dir)}
      sample: 100
      redact: [/inputs/*/data]
  - name: {IRIS}
    match: {{ model: {IRIS} }}
    rollout: {{ stable: {STABLE} }}
    monitor:
      sample: 100
      reference: {{ requests: {len(iris_rows)} }}
      features:
{features}
state:
  path: null
"""
        )
    syd_log = os.path.join(tmp, "switchyard.log")
    syd = start([binary, "run", "-c", cfg], syd_log, cwd=tmp, env=env)
    procs.append((syd, "switchyard", syd_log))
    admin = f"http://127.0.0.1:{ports['admin']}"
    proxy = f"http://127.0.0.1:{ports['listen']}"
    wait_until("switchyard /readyz", lambda: http("GET", f"{admin}/readyz", timeout=2)[0] == 200, 30,
               procs=[(syd, "switchyard")])
    status = json.loads(http("GET", f"{admin}/api/v1/status")[2])
    if status.get("phase") != "progressing" or status.get("mirror") != 100:
        raise RuntimeError(f"switchyard is not in the shadow step: {status}")
    before = shadow_counters(admin)

    # Through switchyard: every request served by stable, every one mirrored.
    path = f"/v2/models/{MODEL}/infer"
    live_bad = []
    live_answers = []
    t1 = time.monotonic()
    for i, body in enumerate(bodies):
        st, hdrs, raw = http("POST", proxy + path, body, headers={"x-request-id": f"e2e-{i}"})
        variant = hdrs.get("x-switchyard-variant")
        if st != 200 or variant != STABLE:
            live_bad.append((i, st, variant, raw[:200]))
        live_answers.append(json.loads(raw) if st == 200 else None)
    log(f"sent {N} requests through switchyard in {time.monotonic() - t1:.1f}s")

    # Directly: the same requests to A and B; the expected agreement.
    expected = {"agree": 0, "disagree": 0}
    expected_disagree_ids = set()
    by_kind = {}
    direct_bad = []
    ids_equal = 0
    live_vs_a = []
    fp_within_tolerance = 0  # agreeing FP answers that are not bit-identical
    direct_b = {}
    for i, body in enumerate(bodies):
        sa, _, ra = http("POST", servers["a"] + path, body)
        sb, _, rb = http("POST", servers["b"] + path, body)
        if sa != 200 or sb != 200:
            direct_bad.append((i, sa, sb, ra[:200], rb[:200]))
            continue
        ra, rb = json.loads(ra), json.loads(rb)
        direct_b[i] = rb
        if ra.get("id") == rb.get("id"):
            ids_equal += 1
        agree = outputs_agree(ra, rb)
        expected["agree" if agree else "disagree"] += 1
        if not agree:
            expected_disagree_ids.add(f"e2e-{i}")
        k = by_kind.setdefault(kinds[i], [0, 0])
        k[0 if agree else 1] += 1
        if agree and ra["outputs"] != rb["outputs"]:
            fp_within_tolerance += 1
        live = live_answers[i]
        if live is not None and not outputs_agree(live, ra):
            live_vs_a.append(i)
    log(f"expected from direct calls: agree={expected['agree']} disagree={expected['disagree']}")
    for k, (ag, dis) in sorted(by_kind.items()):
        log(f"  {k}: {ag} agree, {dis} disagree")
    log(f"  agreeing within tolerance but not bit-identical: {fp_within_tolerance}")
    if direct_bad:
        raise RuntimeError(f"direct calls failed: {direct_bad[:3]}")

    def settled():
        c = shadow_counters(admin)
        return sum(c.values()) - sum(before.values()) >= N

    try:
        wait_until("all shadow comparisons", settled, COUNT_WAIT, procs=[(syd, "switchyard")])
    except RuntimeError as e:
        log(str(e))
    after = shadow_counters(admin)
    got = {k: after.get(k, 0) - before.get(k, 0) for k in ("agree", "disagree", "incomparable")}
    log(f"switchyard: N={N} agree={got['agree']} disagree={got['disagree']} "
        f"incomparable={got['incomparable']}")
    mirrored = {re.search(r'outcome="(\w+)"', k).group(1): int(v)
                for k, v in metric_values(admin, "switchyard_shadow_requests_total").items()
                if 'route="default"' in k and 'outcome="' in k}
    log(f"switchyard mirrored requests by outcome: {mirrored}")

    check("every live answer 200 from the stable", not live_bad, f"{len(live_bad)} bad, first {live_bad[:3]}")
    check("live answers equal stable's direct answers", not live_vs_a, f"requests {live_vs_a[:10]}")
    check("MLServer ids differ between A and B", ids_equal == 0, f"{ids_equal} equal ids")
    check("both outcomes occur", expected["agree"] > 0 and expected["disagree"] > 0, str(expected))
    check("some answers agree only within tolerance", fp_within_tolerance > 0,
          "every agreeing pair was bit-identical: the tolerance went untested")
    check(f"all {N} mirrored requests compared, none incomparable",
          sum(got.values()) == N and got["incomparable"] == 0, str(got))
    check("switchyard agree count == direct agree count", got["agree"] == expected["agree"],
          f"switchyard {got['agree']}, direct {expected['agree']}")
    check("switchyard disagree count == direct disagree count", got["disagree"] == expected["disagree"],
          f"switchyard {got['disagree']}, direct {expected['disagree']}")

    st, _, raw = http("GET", f"{admin}/api/v1/shadow/diffs?limit=1000")
    diffs = json.loads(raw).get("diffs", []) if st == 200 else []
    mention_id = [d for d in diffs for x in d.get("differences", [])
                  if x.get("path") == "/id" or x.get("path", "").startswith("/id/")]
    tops = [x.get("path") for d in diffs for x in d.get("differences", [])
            if not x.get("path", "").startswith("/outputs")]
    check("diffs list disagreements, none of them about /id",
          st == 200 and len(diffs) > 0 and not mention_id and not tops,
          f"status {st}, {len(diffs)} diffs, {len(mention_id)} on /id, non-output paths {tops[:5]}")
    got_ids = {d.get("request_id") for d in diffs}
    if len(expected_disagree_ids) < 100:  # switchyard keeps the 100 most recent diffs
        check("switchyard disagreed on exactly the requests the direct calls disagree on",
              got_ids == expected_disagree_ids,
              f"only switchyard: {sorted(got_ids - expected_disagree_ids)[:10]}, "
              f"only direct: {sorted(expected_disagree_ids - got_ids)[:10]}")
    differing_ids = sum(
        1 for d in diffs
        if isinstance(d.get("live", {}).get("body"), dict)
        and d["live"]["body"].get("id") != d.get("shadow", {}).get("body", {}).get("id")
    )
    check("mirrored pairs carried different ids", len(diffs) > 0 and differing_ids == len(diffs),
          f"{differing_ids} of {len(diffs)} diffs")

    check_capture(capture_dir, bodies, live_answers, direct_b)
    check_iris(admin, proxy, iris_rows, rng, procs=[(syd, "switchyard")])
    log(f"total {time.monotonic() - t0:.1f}s")


def check_capture(capture_dir, bodies, live_answers, direct_b):
    """The prediction log of the clf route: one record per request, inputs redacted, the
    real V2 answers of both backends."""
    sent_ids = {f"e2e-{i}" for i in range(N)}

    def mine():
        return [r for r in read_capture(capture_dir)[0] if r.get("route") == "default"]

    try:
        wait_until(f"{N} capture records", lambda: len(mine()) >= N, CAPTURE_WAIT)
    except RuntimeError as e:
        log(str(e))
    time.sleep(0.5)  # anything beyond N would have been written by now
    records, texts = read_capture(capture_dir)
    recs = [r for r in records if r.get("route") == "default"]
    log(f"capture: {len(records)} records in {len(texts)} file(s), {len(recs)} of route default")
    check(f"capture holds exactly {N} records of the route", len(recs) == N and len(records) == N,
          f"{len(recs)} of the route, {len(records)} in all")
    ids = [r.get("request_id") for r in recs]
    check("capture request ids are the x-request-ids sent, each once",
          len(ids) == len(set(ids)) and set(ids) == sent_ids,
          f"missing {sorted(sent_ids - set(ids))[:5]}, unexpected {sorted(set(ids) - sent_ids)[:5]}")

    not_redacted, bad_live, bad_shadow = [], [], []
    for r in recs:
        rid = r.get("request_id", "")
        i = int(rid[4:]) if rid.startswith("e2e-") and rid[4:].isdigit() and int(rid[4:]) < N else None
        req = r.get("request")
        inputs = req.get("inputs") if isinstance(req, dict) else None
        if (not isinstance(inputs, list) or not inputs
                or any(x.get("data") != "[redacted]" for x in inputs)
                or (i is not None and [(x.get("name"), x.get("shape")) for x in inputs]
                    != [(x["name"], x["shape"]) for x in bodies[i]["inputs"]])):
            not_redacted.append((rid, str(req)[:120]))
        resp = r.get("response")
        if (i is None or r.get("status") != 200 or r.get("backend") != STABLE or not isinstance(resp, dict)
                or resp.get("model_name") != MODEL or not isinstance(resp.get("outputs"), list)
                or not resp.get("id") or live_answers[i] is None
                or resp.get("id") != live_answers[i].get("id") or not outputs_agree(resp, live_answers[i])):
            bad_live.append((rid, r.get("status"), r.get("backend"), str(resp)[:120]))
        sh = r.get("shadow")
        sresp = sh.get("response") if isinstance(sh, dict) else None
        if (i is None or not isinstance(sresp, dict) or sh.get("backend") != CANDIDATE or sh.get("status") != 200
                or sresp.get("model_name") != MODEL or not isinstance(sresp.get("outputs"), list)
                or not sresp.get("id") or sresp.get("id") == (resp or {}).get("id")
                or i not in direct_b or not outputs_agree(sresp, direct_b[i])):
            bad_shadow.append((rid, str(sh)[:160]))
    check("every captured request has its input data redacted", not not_redacted,
          f"{len(not_redacted)}, first {not_redacted[:2]}")
    check(f"every record: status 200 from {STABLE}, its real V2 answer (the one the client got)",
          not bad_live, f"{len(bad_live)}, first {bad_live[:2]}")
    check(f"every record: shadow from {CANDIDATE}, status 200, its real V2 answer",
          not bad_shadow, f"{len(bad_shadow)}, first {bad_shadow[:2]}")

    # No input value, as the client wrote it, anywhere in the log. A number token is
    # bounded so that an output such as 0.91234567 does not count as the input 0.912345.
    tokens = {json.dumps(v) for body in bodies for x in body["inputs"] for v in x["data"]}
    pat = re.compile(r"(?<![0-9.])(?:" + "|".join(re.escape(t) for t in sorted(tokens)) + r")(?![0-9eE])")
    leaks = [(n, m.group(0)) for n, text in texts.items() for m in [pat.search(text)] if m]
    check(f"no raw input value ({len(tokens)} distinct) appears in any capture file", not leaks,
          f"found {leaks[:3]}")


def iris_monitor(admin):
    st, _, raw = http("GET", f"{admin}/api/v1/routes/{IRIS}/monitor")
    if st != 200:
        raise RuntimeError(f"/api/v1/routes/{IRIS}/monitor answered {st}: {raw[:200]!r}")
    return json.loads(raw)


def iris_features(mon):
    """{feature name: report} of the stable's features."""
    backend = next((b for b in mon.get("backends", []) if b.get("backend") == STABLE), {})
    return {f.get("name"): f for f in backend.get("features", [])}


def check_iris(admin, proxy, rows, rng, procs):
    """Data drift on the iris route: a reference from the 150 iris rows, then the same rows
    in another order with one feature shifted."""
    path = f"/v2/models/{IRIS}/infer"
    n = len(rows)

    def send(tag, batch):
        bad = []
        for i, row in enumerate(batch):
            st, hdrs, raw = http("POST", proxy + path, iris_body(row), headers={"x-request-id": f"{tag}-{i}"})
            if st != 200 or hdrs.get("x-switchyard-route") != IRIS or hdrs.get("x-switchyard-variant") != STABLE:
                bad.append((i, st, hdrs.get("x-switchyard-route"), hdrs.get("x-switchyard-variant"), raw[:120]))
            elif json.loads(raw).get("model_name") != IRIS:
                bad.append((i, st, "model_name", raw[:120]))
        return bad

    bad = send("iris-ref", rows)
    check(f"{n} iris requests answered 200 by {STABLE} on route {IRIS}", not bad, f"{len(bad)}, first {bad[:2]}")

    def reference_ready():
        ref = iris_monitor(admin).get("reference", {})
        return ref.get("in_use") and ref.get("requests") == n

    try:
        wait_until(f"the {IRIS} reference from {n} requests", reference_ready, MONITOR_WAIT, procs=procs)
    except RuntimeError as e:
        log(str(e))
    ref = iris_monitor(admin).get("reference", {})
    check(f"the {IRIS} reference is in use, built from {n} requests",
          ref.get("in_use") is True and ref.get("requests") == n and ref.get("building") is None, str(ref))
    t_ref = time.monotonic()

    # Twice over, in two orders: a drift figure is given from 200 values a side.
    shifted = np.concatenate([rows[rng.permutation(n)], rows[rng.permutation(n)]])
    shifted[:, IRIS_FEATURES.index(IRIS_SHIFTED)] += IRIS_SHIFT
    bad = send("iris-shift", shifted)
    check(f"{2 * n} shifted iris requests answered 200", not bad, f"{len(bad)}, first {bad[:2]}")

    def drift_ready():
        feats = iris_features(iris_monitor(admin))
        return all((feats.get(f) or {}).get("drift") and feats[f]["drift"].get("samples", 0) >= 2 * n
                   for f in IRIS_FEATURES)

    try:
        wait_until(f"drift figures on {2 * n} values", drift_ready, MONITOR_WAIT, procs=procs)
    except RuntimeError as e:
        log(str(e))
    mon = iris_monitor(admin)
    metrics = metric_values(admin, "switchyard_feature_drift")
    log(f"{IRIS} drift read {time.monotonic() - t_ref:.1f}s after the reference was complete")
    feats = iris_features(mon)
    for name in IRIS_FEATURES:
        f = feats.get(name) or {}
        d = f.get("drift") or {}
        log(f"  {name}: count={f.get('count')} {d.get('metric')}={d.get('value')} level={d.get('level')} "
            f"samples={d.get('samples')} p50={(f.get('quantiles') or {}).get('p50')}")
    for name in IRIS_FEATURES:
        f = feats.get(name) or {}
        d = f.get("drift") or {}
        missing = f.get("missing") or {}
        fine = (f.get("count") == 3 * n and not any(missing.values()) and d.get("metric") == "psi"
                and d.get("samples") == 2 * n)
        if name == IRIS_SHIFTED:
            check(f"{name} (shifted by {IRIS_SHIFT}): level alert, PSI over 0.2",
                  fine and d.get("level") == "alert" and d.get("value", 0) > 0.2, str(f)[:300])
            want = d.get("value")
            got = [v for labels, v in metrics.items()
                   if f'route="{IRIS}"' in labels and f'feature="{name}"' in labels and f'backend="{STABLE}"' in labels]
            check(f"switchyard_feature_drift for {name} on /metrics equals the monitor's figure",
                  want is not None and len(got) == 1 and abs(got[0] - want) <= 1e-9 * max(1.0, abs(want)),
                  f"monitor {want}, metrics {got}")
        else:
            check(f"{name} (unchanged): level ok, PSI under 0.05",
                  fine and d.get("level") == "ok" and d.get("value", 1) < 0.05, str(f)[:300])


def main_of(run, name, usage):
    """Runs `run(binary, tmp, procs)` as a checked script named `name`: every process it
    starts is stopped on the way out (their logs shown on a failure, the scratch folder
    kept), and the count of checks is printed last; exit 1 on any failure."""
    if len(sys.argv) != 2:
        print(f"usage: {usage} path/to/switchyard", file=sys.stderr)
        return 2
    binary = os.path.abspath(sys.argv[1])
    procs = []
    tmp = tempfile.mkdtemp(prefix=f"switchyard-{name}-")
    try:
        run(binary, tmp, procs)
    except Exception as e:  # noqa: BLE001 -- any failure is one failed check
        check("run", False, f"{type(e).__name__}: {e}")
    finally:
        failed = checks["failed"] > 0
        for p, pname, logpath in reversed(procs):
            stop(p)
            if failed:
                print(f"--- {pname} log (tail) ---\n{tail(logpath)}", flush=True)
        if not failed:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"(kept {tmp})", flush=True)
    print(f"{name}: {checks['passed']} passed, {checks['failed']} failed", flush=True)
    return 1 if checks["failed"] else 0


def main():
    return main_of(run, "mlserver-e2e", "e2e.py")


if __name__ == "__main__":
    sys.exit(main())
