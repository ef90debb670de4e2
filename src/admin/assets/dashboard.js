// The switchyard dashboard: polls the admin API every two seconds and draws the chosen
// route's rollout, charts, gates, drift, shadow disagreements and events; its buttons send
// the rollout controls. Plain DOM code (textContent only, never innerHTML) and uPlot.
"use strict";

const POLL_MS = 2000;
const HISTORY_S = 600;            // how far back the charts look
const TOKEN_KEY = "switchyard-admin-token";
const PHASE_GLYPH = { idle: "○", progressing: "▶", paused: "❚❚", promoted: "✔", rolled_back: "↩" };
// Series colours, distinguishable on the dark panel; the stable solid blue, the candidate orange.
const COLOURS = ["#79c0ff", "#ffa657", "#d2a8ff", "#56d364", "#ff8e86", "#e3b341"];
// Events marked on the weight chart: glyph and colour.
const MARKS = { step: ["▲", "#79c0ff"], rollback: ["✕", "#ff8e86"], promoted: ["★", "#56d364"] };
// The phases each control is allowed in (anything else the API refuses with 409): a
// button shows only in these.
const ALLOWED = {
  promote: ["progressing", "paused"],
  pause: ["progressing"],
  resume: ["paused"],
  rollback: ["progressing", "paused", "promoted"],
  retry: ["rolled_back"],
};

const $ = (id) => document.getElementById(id);

/** An element with text and attributes: the only way this page builds markup. */
function el(tag, text, attrs = {}) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

/** GET path: its JSON, or an error carrying the admin API's reason. */
async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error || `${r.status} ${r.statusText}`);
  return body;
}

const fmt = (v, digits = 2) => (v == null || Number.isNaN(v) ? "—" : Number(v).toFixed(digits));
const pct = (v) => (v == null ? null : v * 100);
const clock = (iso) => (iso || "").slice(11, 19);

// --- route picker ------------------------------------------------------------------------

let listed = "";
/** Shows the picker with several routes and returns the chosen one (kept in #route=NAME);
 *  null with one route, which the unscoped API serves. */
function pick(routes) {
  $("route-picker").hidden = routes.length < 2;
  if (routes.length < 2) return null;
  const select = $("route");
  const key = routes.map((r) => r.route + " " + r.phase).join();
  if (key !== listed) { // rebuilt only on a change, so an open picker stays open
    listed = key;
    select.replaceChildren(...routes.map((r) => el("option", `${r.route} · ${r.phase}`, { value: r.route })));
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("route");
  select.value = routes.some((r) => r.route === wanted) ? wanted : routes[0].route;
  return select.value;
}

// --- panels ------------------------------------------------------------------------------

/** What the rollout panel says of where the route is: an idle route (no candidate) in
 *  those words, else its step, weight and mirror. */
function progressText(s) {
  if (s.phase === "idle") return `idle: all traffic to ${s.stable}`;
  return `step ${s.step} of ${s.steps} · candidate weight ${fmt(s.weight, 1)} % · mirror ${fmt(s.mirror, 1)} %`;
}

/** Shows the control buttons the phase allows, and hides the others. */
function showControls(phase) {
  let shown = 0;
  for (const b of document.querySelectorAll("button[data-action]")) {
    b.hidden = !(ALLOWED[b.dataset.action] || []).includes(phase);
    if (!b.hidden) shown++;
  }
  $("controls-note").textContent = shown ? "" :
    phase === "idle" ? "nothing to control: a candidate in the config starts a rollout" : `no control applies while ${phase}`;
}

function showRollout(s, route) {
  const phase = $("phase");
  phase.dataset.phase = s.phase;
  phase.textContent = `${PHASE_GLYPH[s.phase] || "?"} ${s.phase}`;
  const idle = s.phase === "idle";
  $("backends").textContent = idle ? `${s.stable} · no candidate` : `${s.stable} → ${s.candidate ?? "—"} · ${s.strategy}`;
  $("summary").textContent = (route ? `route ${route} · ` : "") + `config generation ${s.config.generation}` +
    (s.config.last_error ? " · last reload rejected: " + s.config.last_error : "");
  $("progress-text").textContent = progressText(s);
  showControls(s.phase);
  const boxes = [];
  // Steps count from 0, as the API and the CLI do; a promoted rollout has done them all.
  const done = s.phase === "promoted" ? s.steps : s.step;
  for (let i = 0; i < (idle ? 0 : s.steps); i++) {
    const live = i === s.step && (s.phase === "progressing" || s.phase === "paused");
    boxes.push(el("span", null, { class: i < done ? "done" : live ? "current done" : "" }));
  }
  $("steps").replaceChildren(...boxes);
  $("hold").textContent = idle ? "" : s.manual_hold ? "this step waits for promote" :
    s.hold_remaining_s != null ? `${s.hold_remaining_s.toFixed(0)} s left in this step's hold` : "";
  $("reason").textContent = s.reason ? "reason: " + s.reason : "";
}

function showGates(s) {
  const a = s.analysis;
  const body = $("gates").tBodies[0];
  if (!a.enabled || !a.last) {
    $("verdict").textContent = !a.enabled ? "no analysis configured: steps pass when their hold ends" : "no evaluation yet";
    body.replaceChildren();
    return;
  }
  const last = a.last;
  const verdict = el("span", last.verdict, { class: last.verdict });
  $("verdict").replaceChildren("last verdict ", verdict,
    ` at ${clock(last.at)} · ${last.samples} candidate samples (min ${last.min_samples}) · failures ${a.failures} of ${a.failure_limit}`);
  body.replaceChildren(...last.gates.map((g) => {
    const tr = el("tr");
    const bound = g.bound === "min" ? "≥ " : g.bound === "near" ? "≈ " : "≤ ";
    // Sequential gates: where the figure lies at the confidence, and how many more
    // candidate samples would about decide an inconclusive one.
    const interval = g.interval
      ? `${fmt(g.interval.low, 4)} to ${g.interval.high == null ? "unbounded" : fmt(g.interval.high, 4)} (${Math.round(g.confidence * 100)}%)`
      : "";
    const needed = g.needed != null ? `about ${g.needed} more` : "";
    tr.append(el("td", g.gate), el("td", fmt(g.value, 4)), el("td", bound + fmt(g.threshold, 4)),
      el("td", interval, { title: g.test || "" }), el("td", g.outcome, { class: g.outcome }),
      el("td", needed), el("td", g.detail));
    return tr;
  }));
}

/** Every feature's drift from /monitor, the worst first; a note when nothing is monitored. */
function showDrift(m) {
  const rows = [];
  for (const b of (m && m.backends) || []) {
    for (const f of b.features || []) {
      if (f.drift) rows.push({ feature: f.name, backend: b.backend, drift: f.drift });
    }
  }
  // The worst first; figures not given yet (too few values) last.
  const rank = (r) => (r.drift.value == null ? -1 : r.drift.value);
  rows.sort((a, b) => rank(b) - rank(a));
  $("drift").tBodies[0].replaceChildren(...rows.slice(0, 20).map((r) => {
    const d = r.drift;
    // Every figure with the count it rests on; below the minimum, the count and what is needed.
    const values = d.value == null && d.needed != null ? `${d.samples} of ${d.needed} needed` : `${d.samples ?? "-"}`;
    const tr = el("tr");
    tr.append(el("td", r.feature), el("td", r.backend), el("td", fmt(d.value, 3)), el("td", values),
      el("td", d.level, { class: d.level, title: d.reason || "" }));
    return tr;
  }));
  $("drift-note").textContent = !m || !m.enabled ? "no monitor configured for this route" :
    rows.length === 0 ? "no drift figures yet (the reference is still being built, or too few samples)" : "";
}

function showDiffs(d) {
  const items = d.diffs.map((x) => {
    const li = el("li");
    li.append(el("code", x.request_id ?? "(no request id)"));
    for (const f of (x.differences || []).slice(0, 3)) {
      li.append(el("div", `${f.path || "(body)"} · ${f.what}: live ${f.live} ≠ shadow ${f.shadow}`));
    }
    return li;
  });
  $("diffs").replaceChildren(...(items.length ? items : [el("li", "none", { class: "muted" })]));
}

function showEvents(s) {
  $("events").tBodies[0].replaceChildren(...s.events.slice(-20).reverse().map((e) => {
    const tr = el("tr");
    tr.append(el("td", clock(e.at), { class: "muted" }), el("td", e.kind), el("td", e.message));
    return tr;
  }));
}

// --- charts ------------------------------------------------------------------------------

const charts = {}; // id → { plot, key }

/** The index of the newest value that is not null, or -1. */
function newest(values) {
  for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return i;
  return -1;
}

/** A legend's value of series `si` of the chart `entry`: the one under the cursor, or,
 *  with the cursor off the plot, the series' newest, so a legend always shows figures.
 *  Its series' `show(value, index)` of the latest draw writes it. */
function legendValue(entry, u, si, idx) {
  const values = u.data[si];
  const i = idx ?? newest(values);
  const value = i < 0 ? null : values[i];
  return value == null ? "—" : entry.show[si - 1](value, i);
}

/** The time column's legend: the time under the cursor, or "latest". */
const timeValue = (u, v, si, idx) =>
  idx == null || v == null ? "latest" : new Date(v * 1000).toLocaleTimeString();

/** Draws `series` ([{label, values, dash?, colour?, show?}]) over `xs` (unix seconds) into
 *  the figure `id`; `show(value, index)` writes a value in the legend (`unit` after two
 *  decimals when absent). The plot is rebuilt only when the series change. `marks` are
 *  drawn too. */
function draw(id, xs, series, marks = [], unit = "", options = {}) {
  const figure = $(id);
  const box = figure.querySelector(".plot");
  const points = series.some((s) => s.values.some((v) => v != null)) ? xs.length : 0;
  figure.dataset.points = String(points);
  if (points === 0) {
    if (charts[id]) { charts[id].plot.destroy(); delete charts[id]; }
    box.replaceChildren(el("p", "no data yet", { class: "empty" }));
    return;
  }
  const key = series.map((s) => s.label).join("|");
  const data = [xs, ...series.map((s) => s.values)];
  const show = series.map((s) => s.show || ((v) => fmt(v) + unit));
  const c = charts[id];
  if (c && c.key === key) {
    c.marks = marks;
    c.show = show;
    c.plot.setData(data);
    // Off the plot, the legend shows the newest figures: refresh it with the data.
    if (c.plot.cursor.idx == null) c.plot.setLegend({ idx: null });
    return;
  }
  if (c) c.plot.destroy();
  box.replaceChildren();
  const entry = { key, marks, show };
  const axis = { stroke: "#a9b4c0", grid: { stroke: "#2c3643" }, ticks: { stroke: "#2c3643" } };
  entry.plot = new uPlot({
    width: box.clientWidth || 400,
    height: 200,
    scales: { x: { time: true }, ...(options.range ? { y: { range: options.range } } : {}) },
    axes: [axis, { ...axis, size: 50 }],
    series: [{ label: "time", value: timeValue }, ...series.map((s, i) => ({
      label: s.label, stroke: s.colour || COLOURS[i % COLOURS.length], width: 2, dash: s.dash, spanGaps: false,
      value: (u, v, si, idx) => legendValue(entry, u, si, idx),
    }))],
    hooks: { draw: [(u) => drawMarks(u, entry.marks)] },
  }, data, box);
  charts[id] = entry;
}

/** Draws event marks (vertical lines with a glyph) on a plot's canvas. */
function drawMarks(u, marks) {
  const ctx = u.ctx;
  const { top, height } = u.bbox;
  ctx.save();
  ctx.font = `${14 * devicePixelRatio}px system-ui, sans-serif`;
  ctx.textAlign = "center";
  for (const m of marks) {
    const x = Math.round(u.valToPos(m.at, "x", true));
    if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
    ctx.strokeStyle = ctx.fillStyle = m.colour;
    ctx.setLineDash([4, 4]);
    ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + height); ctx.stroke();
    ctx.fillText(m.glyph, x, top + 14 * devicePixelRatio);
  }
  ctx.restore();
}

/** One column of history values: `f(point)` for every point. */
const column = (points, f) => points.map((p) => { const v = f(p); return v == null ? null : v; });

function showCharts(h, s) {
  const points = h.points;
  const xs = points.map((p) => p.at);
  const names = [...new Set(points.flatMap((p) => Object.keys(p.backends)))];
  const of = (name, field, scale = 1) =>
    column(points, (p) => { const v = p.backends[name]?.[field]; return v == null ? null : v * scale; });
  const has = (name, field) => of(name, field).some((v) => v != null && v !== 0);
  const seconds = xs.length ? xs[xs.length - 1] - xs[0] : 0;
  $("span").textContent = !xs.length ? "" : seconds < 120 ? `· last ${seconds} s` : `· last ${Math.round(seconds / 60)} min`;

  const marks = h.events.filter((e) => MARKS[e.kind])
    .map((e) => ({ at: Date.parse(e.at) / 1000, glyph: MARKS[e.kind][0], colour: MARKS[e.kind][1] }));
  const percent = (v) => `${fmt(v, 1)} %`;
  draw("chart-weight", xs, [
    { label: "candidate weight", values: column(points, (p) => p.weight), show: percent },
    { label: "mirror", values: column(points, (p) => p.mirror), dash: [6, 4], colour: COLOURS[2], show: percent },
  ], marks);
  // Users' requests apart from the copies mirrored to a backend (its answers, no user's).
  const perSecond = (v) => `${fmt(v, 1)}/s`;
  draw("chart-rps", xs, names.flatMap((n, i) => [
    { label: `${n} users`, values: of(n, "rps"), colour: COLOURS[i], show: perSecond },
    ...(has(n, "mirrored_rps")
      ? [{ label: `${n} mirrored copies`, values: of(n, "mirrored_rps"), colour: COLOURS[i], dash: [6, 4], show: perSecond }]
      : []),
  ]));
  draw("chart-errors", xs, names.map((n) => ({ label: n, values: of(n, "error_rate", 100) })), [], " %");
  draw("chart-latency", xs, names.flatMap((n, i) => [
    { label: `${n} p50`, values: of(n, "p50_ms"), colour: COLOURS[i] },
    { label: `${n} p99`, values: of(n, "p99_ms"), colour: COLOURS[i], dash: [6, 4] },
  ]), [], " ms");
  // The noise floor: how often the stable agrees with itself (shadow.calibrate), as a line.
  const noise = s.window?.noise_floor?.disagreement;
  const agreement = names.filter((n) => of(n, "shadow_agreement").some((v) => v != null))
    .map((n) => ({ label: n, values: of(n, "shadow_agreement", 100), colour: COLOURS[names.indexOf(n)], show: percent }));
  if (noise != null) {
    agreement.push({ label: "noise floor (stable vs itself)", values: xs.map(() => pct(1 - noise)), dash: [2, 4], colour: "#a9b4c0", show: percent });
  }
  draw("chart-agreement", xs, agreement);
  // Output drift is the candidate's against the stable: one series, on its own axis.
  draw("chart-drift", xs, names.filter((n) => of(n, "output_drift").some((v) => v != null)).map((n) => (
    { label: `${n} vs ${h.stable}`, values: of(n, "output_drift"), colour: COLOURS[names.indexOf(n)], show: (v) => fmt(v, 3) }
  )));
  // Accuracy on its own axis, each figure with the labels it is of.
  draw("chart-accuracy", xs, names.map((n, i) => {
    const labels = of(n, "labels");
    return {
      label: n, values: of(n, "accuracy", 100), colour: COLOURS[i],
      show: (v, at) => `${fmt(v, 1)} % of ${labels[at] ?? 0} labels`,
    };
  }), [], "", { range: [0, 100] });
}

window.addEventListener("resize", () => {
  for (const [id, c] of Object.entries(charts)) {
    const w = $(id).querySelector(".plot").clientWidth;
    if (w) c.plot.setSize({ width: w, height: 200 });
  }
});

// --- refresh -----------------------------------------------------------------------------

let base = "api/v1/"; // the API prefix of the route shown
let turn = 0;
async function refresh() {
  const mine = ++turn; // an older refresh that ends later must not paint over a newer one
  try {
    const routes = await get("api/v1/routes").then((a) => a.routes, () => []);
    const route = pick(routes);
    const api = route ? `api/v1/routes/${encodeURIComponent(route)}/` : "api/v1/";
    const [s, h, d, m] = await Promise.all([
      get(api + "status"),
      get(api + `history?since=${HISTORY_S}`),
      get(api + "shadow/diffs?limit=5").catch(() => ({ diffs: [] })),
      get(api + "monitor").catch(() => null),
    ]);
    if (mine !== turn) return;
    base = api;
    showRollout(s, route);
    showGates(s);
    showCharts(h, s);
    showDrift(m);
    showDiffs(d);
    showEvents(s);
  } catch (e) {
    if (mine === turn) $("summary").textContent = "admin API: " + e.message;
  }
}

// --- controls ----------------------------------------------------------------------------

/** Asks for one line of text in the page's dialog; resolves to it, or null on cancel. */
function ask(label, { secret = false, note = "", value = "" } = {}) {
  const dialog = $("ask"), input = $("ask-input");
  $("ask-label").textContent = label;
  $("ask-note").textContent = note;
  input.type = secret ? "password" : "text";
  input.value = value;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("ask-ok").onclick = $("ask-cancel").onclick = input.onkeydown = dialog.oncancel = null;
      dialog.close();
      resolve(answer);
    };
    $("ask-ok").onclick = () => done(input.value);
    $("ask-cancel").onclick = () => done(null);
    dialog.oncancel = (e) => { e.preventDefault(); done(null); };
    input.onkeydown = (e) => { if (e.key === "Enter") done(input.value); };
    dialog.showModal();
    input.focus();
  });
}

function say(text, isError = false) {
  const p = $("answer");
  p.textContent = text;
  p.classList.toggle("error", isError);
}

/** Sends a control: without a token first (a loopback admin without one takes it); on 401
 *  asks for the token once, keeps it for this tab, and sends again. */
async function control(action, body) {
  let token = sessionStorage.getItem(TOKEN_KEY);
  for (let attempt = 0; ; attempt++) {
    const headers = { "content-type": "application/json" };
    if (token) headers.authorization = "Bearer " + token;
    const r = await fetch(base + action, { method: "POST", headers, body: JSON.stringify(body) });
    const answer = await r.json().catch(() => ({}));
    const badToken = r.status === 401 || (r.status === 403 && token && answer.error === "wrong bearer token");
    if (badToken && attempt === 0) {
      sessionStorage.removeItem(TOKEN_KEY);
      token = await ask("Admin token", { secret: true, note: token ? "That token was refused." : `${action} needs the admin token.` });
      if (!token) return say(`${action}: cancelled`);
      sessionStorage.setItem(TOKEN_KEY, token);
      continue;
    }
    if (badToken) sessionStorage.removeItem(TOKEN_KEY);
    if (r.ok) {
      say(`${action}: done · phase ${answer.phase}` + (answer.warning ? ` · ${answer.warning}` : ""));
    } else {
      say(`${action} refused (${r.status}): ${answer.error || r.statusText}`, true);
    }
    return refresh();
  }
}

async function onControl(action) {
  let body = {};
  if (action === "rollback" || action === "pause") {
    const reason = await ask(`Reason for ${action === "rollback" ? "rolling back" : "pausing"}`, { value: `${action} from the dashboard` });
    if (reason == null) return say(`${action}: cancelled`);
    body = reason ? { reason } : {};
  }
  try {
    await control(action, body);
  } catch (e) {
    say(`${action} failed: ${e.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("button[data-action]")) {
    b.addEventListener("click", () => onControl(b.dataset.action));
  }
  $("route").addEventListener("change", (e) => { location.hash = "route=" + encodeURIComponent(e.target.value); });
  window.addEventListener("hashchange", refresh);
  refresh();
  setInterval(refresh, POLL_MS);
});
