// The recon console: pages drawn from the console's JSON API and its
// server-sent events; charts are SVG drawn here, with no library.
"use strict";

const S = { series: [], live: null, alerts: [], lastSeq: 0, rollback: document.body.dataset.rollback === "true", page: "" };
const MAX_POINTS = 900, MAX_ALERTS = 10000, FEED_ROWS = 50;
const COLORS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#718096", "#c53030"];

// ---- helpers

function el(tag, attrs, ...kids) {
  const svg = ["svg", "g", "line", "path", "rect", "text", "circle", "polyline", "title"].includes(tag);
  const e = svg ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") e.textContent = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k.startsWith("data-") || svg || k === "class" || k === "href" || k === "type" || k === "placeholder" || k === "id" || k === "value" || k === "colspan" || k === "title" || k === "autocomplete") e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function fmt(x) {
  if (x === undefined || x === null || Number.isNaN(x)) return "–";
  const a = Math.abs(x);
  if (a === 0) return "0";
  if (a >= 1e6 || a < 1e-3) return x.toExponential(2);
  if (a >= 100) return x.toFixed(0);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}
// niceStep rounds a tick step to 1, 2 or 5 times a power of ten.
function niceStep(raw) {
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}
// tick labels an axis value compactly: 0.5, 20, 1.5k, 2M.
function tick(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  for (const [d, u] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) if (a >= d) return +(v / d).toPrecision(3) + u;
  if (a < 0.01) return v.toExponential(0);
  return String(+v.toPrecision(3));
}
function fmtInt(x) { return x === undefined || x === null ? "–" : Math.round(x).toLocaleString("en-US"); }
function clock(ms) { return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "–"; }
function stamp(ms) { return ms ? new Date(ms).toLocaleString([], { hour12: false }) : "–"; }
function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 1) return "now";
  if (s < 90) return s.toFixed(0) + " s ago";
  if (s < 5400) return (s / 60).toFixed(0) + " min ago";
  return (s / 3600).toFixed(1) + " h ago";
}
function wide(title, sub, ...body) { const c = card(title, sub, ...body); c.classList.add("wide"); return c; }
function card(title, sub, ...body) { return el("div", { class: "card" }, el("h2", { text: title }), sub ? el("div", { class: "sub", text: sub }) : null, ...body); }
async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  const b = await r.json();
  if (!r.ok) throw new Error(b.error || r.statusText);
  return b;
}

// ---- charts

// lineChart draws series [{name, color, pts: [[x, y]...], step}] into an
// SVG: time on x unless opts.xNumeric, y linear or log (opts.log), with
// horizontal marker lines opts.hlines [{y, label, color}] and points
// opts.marks [{x, y, label}].
function lineChart(series, opts = {}) {
  const W = 640, H = opts.tall ? 260 : 180, L = 56, R = 12, T = 10, B = opts.xLabel ? 36 : 24;
  const svg = el("svg", { class: "chart" + (opts.tall ? " tall" : ""), viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  let xs = [], ys = [];
  for (const s of series) for (const [x, y] of s.pts) { xs.push(x); if (!opts.log || y > 0) ys.push(y); }
  for (const h of opts.hlines || []) if (!opts.log || h.y > 0) ys.push(h.y);
  if (!xs.length) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: opts.empty || "no data yet" }));
    return wrap(svg, series);
  }
  let x0 = Math.min(...xs), x1 = Math.max(...xs);
  if (!opts.xNumeric) x0 = Math.min(x0, x1 - 60000); // at least a minute wide
  if (x1 === x0) x1 = x0 + 1;
  let y0 = ys.length ? Math.min(...ys) : 0, y1 = ys.length ? Math.max(...ys) : 1;
  if (opts.log) {
    y0 = Math.log10(Math.max(y0, 1e-12)); y1 = Math.log10(Math.max(y1, 1e-12));
    y0 = Math.floor(y0); y1 = Math.ceil(y1); if (y1 === y0) y1 = y0 + 1;
  } else {
    if (!opts.tight) y0 = Math.min(0, y0);
    if (y1 === y0) y1 = y0 + 1;
    const st = niceStep((y1 - y0) / 4);
    y0 = Math.floor(y0 / st) * st; y1 = Math.ceil(y1 * 1.04 / st) * st;
  }
  const X = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const Y = y => { const v = opts.log ? Math.log10(Math.max(y, 1e-12)) : y; return T + (1 - (v - y0) / (y1 - y0)) * (H - T - B); };
  const grid = el("g", { class: "grid" }), axis = el("g", { class: "axis" });
  const yticks = [];
  if (opts.log) for (let e = y0; e <= y1; e += Math.max(1, Math.ceil((y1 - y0) / 6))) yticks.push(Math.pow(10, e));
  else { const st = niceStep((y1 - y0) / 4); for (let v = y0; v <= y1 + st / 2; v += st) yticks.push(v); }
  for (const v of yticks) {
    const y = Y(v);
    grid.append(el("line", { x1: L, x2: W - R, y1: y, y2: y }));
    axis.append(el("text", { x: L - 6, y: y + 4, "text-anchor": "end", text: tick(v) }));
  }
  for (let i = 0; i <= 4; i++) {
    const v = x0 + (x1 - x0) * i / 4, x = X(v);
    axis.append(el("text", { x, y: opts.xLabel ? H - 18 : H - 6, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", text: opts.xNumeric ? tick(Math.round(v)) : clock(v) }));
  }
  axis.append(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B }));
  if (opts.xLabel) axis.append(el("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", text: opts.xLabel }));
  svg.append(grid, axis);
  for (const h of opts.hlines || []) {
    if (opts.log && !(h.y > 0)) continue;
    const y = Y(h.y);
    svg.append(el("line", { x1: L, x2: W - R, y1: y, y2: y, stroke: h.color || "#c53030", "stroke-dasharray": "5 4", "stroke-width": 1.5 }));
    svg.append(el("text", { x: W - R - 2, y: y - 4, "text-anchor": "end", fill: h.color || "#c53030", text: h.label }));
  }
  series.forEach((s, i) => {
    const c = s.color || COLORS[i % COLORS.length];
    const pts = s.pts.filter(([, y]) => !opts.log || y > 0);
    if (!pts.length) return;
    let d = "";
    pts.forEach(([x, y], j) => {
      if (j && s.step) d += `H${X(x).toFixed(1)}`;
      d += `${j ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
    });
    svg.append(el("path", { d, fill: "none", stroke: c, "stroke-width": 1.6 }));
  });
  for (const m of opts.marks || []) {
    svg.append(el("circle", { cx: X(m.x), cy: Y(m.y), r: m.r || 5, fill: m.color || "#c53030", stroke: "#fff", "stroke-width": 1.5 }, el("title", { text: m.label || "" })));
  }
  return wrap(svg, series);
}
function wrap(svg, series) {
  const legend = el("div", { class: "legend" });
  series.forEach((s, i) => { if (s.name) { const sw = el("i"); sw.style.background = s.color || COLORS[i % COLORS.length]; legend.append(el("span", {}, sw, s.name)); } });
  return el("div", {}, svg, legend);
}

// ---- live data

function connect() {
  const conn = document.getElementById("conn");
  const es = new EventSource("api/events");
  es.addEventListener("overview", e => {
    const o = JSON.parse(e.data);
    S.series = o.series; S.live = o.live;
    const have = new Set(o.alerts.map(a => a.id));
    S.alerts = o.alerts.concat(S.alerts.filter(a => !have.has(a.id))).slice(0, MAX_ALERTS);
    S.lastSeq = o.last_seq; S.rollback = o.rollback;
    conn.textContent = "live"; conn.className = "conn live";
    render(true);
  });
  es.addEventListener("tick", e => {
    const t = JSON.parse(e.data);
    S.series.push(t.point); if (S.series.length > MAX_POINTS) S.series.splice(0, S.series.length - MAX_POINTS);
    S.live = t.live;
    if (t.alerts.length) { S.alerts = t.alerts.concat(S.alerts).slice(0, MAX_ALERTS); }
    S.newAlerts = t.alerts.map(a => a.id);
    S.lastSeq = t.last_seq;
    conn.textContent = "live · " + clock(t.point.t); conn.className = "conn live";
    render(false);
  });
  es.onerror = () => { conn.textContent = "disconnected: retrying"; conn.className = "conn down"; };
}

function chips() {
  const c = document.getElementById("chips"); c.replaceChildren();
  const l = S.live; if (!l) return;
  const tr = l.training;
  if (tr.error) c.append(el("span", { class: "chip bad", title: tr.error, text: "coordinator unreachable" }));
  c.append(el("span", { class: "chip", text: "model v" + (tr.version || "–") }));
  c.append(el("span", { class: "chip", title: "the threshold of the newest model, which the scorers apply", text: "threshold " + (tr.in_effect ? fmt(tr.in_effect) : "not set yet") }));
  if (tr.state) c.append(el("span", { class: "chip", title: STATES[tr.state] || "", text: "training: " + tr.state }));
  c.append(el("span", { class: "chip", text: (tr.workers || []).length + " trainers" }));
  c.append(el("span", { class: "chip", text: l.scorers.filter(s => Date.now() - s.last_seen < 30000).length + " scorers active" }));
  for (const g of l.lags) if (g.error) c.append(el("span", { class: "chip bad", title: g.error, text: g.role + " lag unknown" }));
}

// What each training state means, as the coordinator names them.
const STATES = {
  warming: "collecting the first records' statistics (the normalizer and the code width); no model yet",
  learning: "training at full pace until the first threshold is set",
  settled: "a threshold is set; training at full pace until the held-out errors stop falling",
  maintaining: "the model has stopped improving: each new record is trained on a few times; drift sends it back to settled",
};

// ---- pages

const pages = {
  overview: { render: overview },
  alerts: { render: alertsPage },
  alert: { render: alertPage, static: true },
  scores: { render: scoresPage, poll: 2000 },
  models: { render: modelsPage, poll: 3000 },
};
let pollTimer = null;

function route() {
  const h = location.hash.replace(/^#\/?/, "") || "overview";
  const [name, ...rest] = h.split("/");
  S.page = pages[name] ? name : "overview";
  S.arg = decodeURIComponent(rest.join("/"));
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.dataset.page === (S.page === "alert" ? "alerts" : S.page));
  clearInterval(pollTimer); pollTimer = null;
  const p = pages[S.page];
  if (p.poll) pollTimer = setInterval(() => render(false, true), p.poll);
  render(true, true);
}

// render redraws the page: full on navigation; on a tick only the live
// pages redraw (the alert page is a document to read: it stays still).
function render(full, polled) {
  chips();
  const p = pages[S.page];
  if (!full && (p.static || (p.poll && !polled))) return;
  p.render(document.getElementById("main"), full);
}

function overview(main) {
  const pts = S.series, l = S.live;
  const line = (f) => pts.map(p => [p.t, f(p)]);
  const reasons = new Set(); for (const p of pts) for (const r of Object.keys(p.dead || {})) reasons.add(r);
  const grid = el("div", { class: "grid" },
    card("Records per second", "produced to the records topic, and scored (read back from the scores topic)",
      lineChart([{ name: "in", pts: line(p => p.in) }, { name: "scored", pts: line(p => p.scored) }])),
    card("Alerts per second", "read from the alerts topic",
      lineChart([{ name: "alerts", pts: line(p => p.alerts), color: "#c53030" }])),
    card("Dead letters per second, by reason", "records that could not be scored, on the dead-letter topic",
      lineChart([...reasons].map(r => ({ name: r, pts: line(p => (p.dead || {})[r] || 0) })), { empty: "no dead letters" })),
    card("Consumer lag (records not yet committed)", "summed over the records topic's partitions; per partition below",
      lineChart([{ name: "scorers", pts: line(p => p.scorer_lag) }, { name: "trainers", pts: line(p => p.trainer_lag) }])),
    card("Training rounds per second", "synchronous rounds the coordinator completed",
      lineChart([{ name: "rounds/s", pts: line(p => p.rounds), color: "#38a169" }])),
    card("Training loss", "the last round's mean training objective (lower is better)",
      lineChart([{ name: "loss", pts: line(p => p.loss).filter(([, y]) => y > 0), color: "#805ad5" }], { tight: true })),
    card("Model version and threshold", "a score above the threshold raises an alert; dots mark new versions",
      versionChart(pts)),
  );
  const tables = el("div", { class: "grid" });
  if (l) {
    tables.append(card("Trainers", "as the coordinator reports them", workersTable(l.training)));
    tables.append(card("Scorers", "from their score records: the version each scored with last", scorersTable(l.scorers, l.training.version)));
    for (const g of l.lags) tables.append(card(`Lag of the ${g.role} group "${g.group}"`, g.state ? "group state: " + g.state : "", lagTable(g)));
    tables.append(card("Totals since the console started", "", totalsList(l.totals)));
  }
  main.replaceChildren(el("h1", { text: "Overview" }),
    el("p", { class: "help", text: "The stream in the last 15 minutes. Scorers read records and publish an alert for each record whose reconstruction error (its score) is above the model's threshold; trainers learn the model from the same records." }),
    grid, tables);
}

function versionChart(pts) {
  const th = pts.filter(p => p.threshold > 0).map(p => [p.t, p.threshold]);
  const marks = [];
  for (let i = 1; i < pts.length; i++) if (pts[i].version !== pts[i - 1].version && pts[i].threshold > 0) marks.push({ x: pts[i].t, y: pts[i].threshold, label: "v" + pts[i].version, r: 3, color: "#2b6cb0" });
  return lineChart([{ name: "threshold", pts: th, step: true, color: "#c53030" }], { marks, tight: true, empty: "no threshold yet" });
}

function workersTable(tr) {
  if (tr.error && !tr.at) return el("div", { class: "bad", text: tr.error });
  const rows = (tr.workers || []).map(w => el("tr", {},
    el("td", { text: w.id }), el("td", { text: ago(w.joined_at) }), el("td", { text: ago(w.last_gradient) }),
    el("td", { class: "num", text: fmtInt(w.gradients) }), el("td", { text: w.benched ? "benched" : "in rounds", class: w.benched ? "bad" : "" })));
  return el("div", {},
    el("dl", { class: "kv" }, el("dt", { text: "round" }), el("dd", { text: fmtInt(tr.round) }), el("dt", { text: "state" }), el("dd", { text: (tr.state || "–") + (STATES[tr.state] ? ": " + STATES[tr.state] : "") }),
      el("dt", { text: "records trained on" }), el("dd", { text: fmtInt(tr.records) }), el("dt", { text: "times each record was trained on" }), el("dd", { text: fmt(tr.presentations) + " on average" })),
    el("table", {}, el("tr", {}, el("th", { text: "trainer" }), el("th", { text: "joined" }), el("th", { text: "last gradient" }), el("th", { class: "num", text: "gradients" }), el("th", { text: "" })),
      rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted", text: "no trainer joined" }))));
}

function scorersTable(scorers, latest) {
  const rows = scorers.map(s => el("tr", { "data-scorer": s.id, "data-version": s.version },
    el("td", { text: s.id }), el("td", {}, el("span", { class: "pill" + (s.version === latest ? " live" : ""), text: "v" + s.version })),
    el("td", { text: ago(s.last_seen) }), el("td", { text: s.partitions.join(", ") }), el("td", { class: "num", text: fmtInt(s.scored) })));
  return el("table", {}, el("tr", {}, el("th", { text: "scorer" }), el("th", { text: "version" }), el("th", { text: "last score" }), el("th", { text: "partitions" }), el("th", { class: "num", text: "scored" })),
    rows.length ? rows : el("tr", {}, el("td", { colspan: 5, class: "muted", text: "no score records seen (scorers write them with --scores-topic)" })));
}

function lagTable(g) {
  if (g.error) return el("div", { class: "bad", text: g.error });
  return el("table", {}, el("tr", {}, el("th", { class: "num", text: "partition" }), el("th", { class: "num", text: "committed" }), el("th", { class: "num", text: "end" }), el("th", { class: "num", text: "lag" }), el("th", { text: "held by" })),
    g.partitions.map(p => el("tr", {}, el("td", { class: "num", text: p.partition }), el("td", { class: "num", text: p.committed < 0 ? "none" : fmtInt(p.committed) }),
      el("td", { class: "num", text: fmtInt(p.end) }), el("td", { class: "num", text: fmtInt(p.lag) }), el("td", {}, el("span", { class: "holder", title: p.holder || "", text: p.holder ? p.holder.split(" (")[0] : "unassigned" })))));
}

function totalsList(t) {
  const dl = el("dl", { class: "kv" }, el("dt", { text: "scores read" }), el("dd", { text: fmtInt(t.scored) }), el("dt", { text: "alerts read" }), el("dd", { text: fmtInt(t.alerts) }));
  for (const [r, n] of Object.entries(t.dead_letters || {})) dl.append(el("dt", { text: "dead letters: " + r }), el("dd", { text: fmtInt(n) }));
  for (const [r, n] of Object.entries(t.undecodable || {})) dl.append(el("dt", { text: "unreadable on " + r }), el("dd", { class: "bad", text: fmtInt(n) }));
  return dl;
}

// ---- alerts

const F = { key: "", feature: "", version: "" };
function alertsPage(main, full) {
  if (full || !document.getElementById("alerts-feed")) {
    const input = (name, ph) => el("label", {}, name, el("input", { id: "f-" + name, value: F[name], placeholder: ph, on: { input: e => { F[name] = e.target.value.trim(); fillAlerts(); } } }));
    main.replaceChildren(el("h1", { text: "Alerts" }),
      el("p", { class: "help", text: "Newest first, live. Each row is one record whose score passed the threshold; open it to see every listed feature's received value against what the model expected." }),
      el("div", { class: "filters" }, input("key", "exact key"), input("feature", "feature name"), input("version", "model version")),
      el("div", { class: "card" }, el("table", { id: "alerts-feed" })));
    // The live events carry new alerts only: the page starts from every
    // alert the console keeps.
    getJSON("api/alerts?limit=" + MAX_ALERTS).then(list => {
      const have = new Set(list.map(a => a.id));
      S.alerts = S.alerts.filter(a => !have.has(a.id) && a.seq > (list.length ? list[0].seq : 0)).concat(list).slice(0, MAX_ALERTS);
      fillAlerts();
    }).catch(() => {});
  }
  fillAlerts();
}
function fillAlerts() {
  const t = document.getElementById("alerts-feed"); if (!t) return;
  const v = F.version ? Number(F.version) : 0;
  const list = S.alerts.filter(a => (!F.key || a.key === F.key) && (!v || a.model.version === v) && (!F.feature || a.features.some(f => f.name === F.feature)));
  // Newest first by the time scored: the partitions' alerts arrive in
  // their own order.
  list.sort((x, y) => Date.parse(y.scored_at) - Date.parse(x.scored_at));
  const fresh = new Set(S.newAlerts || []);
  t.replaceChildren(el("tr", {}, el("th", { text: "scored at" }), el("th", { text: "key" }), el("th", { class: "num", text: "score" }), el("th", { class: "num", text: "threshold" }), el("th", { text: "features that explain it" }), el("th", { text: "model" }), el("th", { text: "record" })),
    ...list.slice(0, FEED_ROWS).map(a => el("tr", { class: "alert-row" + (fresh.has(a.id) ? " new" : ""), "data-id": a.id, on: { click: () => { location.hash = "#/alert/" + encodeURIComponent(a.id); } } },
      el("td", { text: clock(Date.parse(a.scored_at)) }), el("td", { text: a.key }), el("td", { class: "num", text: fmt(a.score) }), el("td", { class: "num", text: fmt(a.threshold) }),
      el("td", { text: a.features.map(f => f.name).join(", ") }), el("td", { text: "v" + a.model.version }), el("td", { class: "muted", text: a.id }))));
  if (list.length > FEED_ROWS) t.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: `the newest ${FEED_ROWS} of ${fmtInt(list.length)} alerts kept; filter by key, feature or version to see others` })));
  if (!list.length) t.append(el("tr", {}, el("td", { colspan: 7, class: "muted", text: S.alerts.length ? "no alert matches the filters" : "no alert yet in the kept window" })));
}

async function alertPage(main) {
  const id = S.arg;
  main.replaceChildren(el("p", { class: "muted", text: "loading " + id + "…" }));
  let d;
  try { d = await getJSON("api/alert?id=" + encodeURIComponent(id)); } catch (e) { main.replaceChildren(el("div", { class: "notice bad", text: e.message }), el("a", { href: "#/alerts", text: "back to the alerts" })); return; }
  const a = d.alert;
  const ex = d.explained;
  const full = ex && !ex.error;
  const listedShare = full ? ex.features.filter(f => a.features.some(g => g.name === f.name)).reduce((s, f) => s + f.share, 0) : null;
  main.replaceChildren(
    el("a", { href: "#/alerts", text: "← alerts" }),
    el("h1", { id: "alert-title", text: `Alert on key ${a.key}` }),
    el("p", { class: "help", text: "The model reconstructs each record from the few patterns it has learned; a feature far from its reconstruction is what makes the record unusual. The bars compare the value received with the value the model expected." }),
    el("div", { class: "grid" },
      wide("What was received, against what the model expected", full ? `every feature, by its part of the score; the alert lists ${a.features.length}` : `the ${a.features.length} features the alert lists`, featureBars(a, ex)),
      card("The record", "", el("dl", { class: "kv" },
        el("dt", { text: "key" }), el("dd", { text: a.key }),
        el("dt", { text: "score" }), el("dd", { id: "alert-score", text: fmt(a.score) + "  (threshold " + fmt(a.threshold) + ", " + fmt(a.score / a.threshold) + "×)" }),
        el("dt", { text: "scored at" }), el("dd", { text: stamp(Date.parse(a.scored_at)) }),
        el("dt", { text: "record time" }), el("dd", { text: stamp(Date.parse(a.source.timestamp)) }),
        el("dt", { text: "source" }), el("dd", { text: `${a.source.topic}, partition ${a.source.partition}, offset ${a.source.offset}` }),
        el("dt", { text: "model" }), el("dd", { text: `version ${a.model.version} (${a.model.variant})` }),
        listedShare === null ? null : el("dt", { text: "the listed features' part" }), listedShare === null ? null : el("dd", { text: (100 * listedShare).toFixed(0) + "% of the score" })))),
    el("div", { class: "grid" }, card(`Neighbours in time: the scores of key ${a.key} around it`, d.neighbours.length ? "the red dot is this alert; the dashed line the threshold" : "", neighbours(a, d.neighbours))));
}

// featureBars draws each feature's received value against its
// reconstruction. With the alert recomputed (ex), every feature is there,
// ordered by its term of the score, with its share; the features the alert
// lists carry the alert's own figures. Without, only the listed ones, with
// their squared errors.
function featureBars(a, ex) {
  const listed = new Map(a.features.map(f => [f.name, f]));
  const full = ex && !ex.error;
  let rows = full ? ex.features.map(f => ({ ...f, ...(listed.get(f.name) || {}), term: f.term, share: f.share, listed: listed.has(f.name) }))
    : a.features.map(f => ({ ...f, listed: true }));
  const more = rows.length > 15 ? rows.length - 15 : 0;
  if (more) rows = rows.filter((r, i) => i < 15 || r.listed);
  const W = 640, rowH = 40, L = 110, R = 190, H = rows.length * rowH + 24;
  let lo = 0, hi = 0;
  for (const f of rows) { lo = Math.min(lo, f.value, f.reconstruction); hi = Math.max(hi, f.value, f.reconstruction); }
  if (hi === lo) hi = lo + 1;
  const X = v => L + (v - lo) / (hi - lo) * (W - L - R);
  const svg = el("svg", { class: "chart bars", viewBox: `0 0 ${W} ${H}`, id: "feature-bars" });
  svg.append(el("line", { x1: X(0), x2: X(0), y1: 2, y2: H - 18, stroke: "#b8bfcc" }));
  rows.forEach((f, i) => {
    const y = 6 + i * rowH;
    const g = el("g", { class: "feature-bar", "data-name": f.name, "data-listed": String(f.listed), "data-value": String(f.value), "data-reconstruction": String(f.reconstruction), "data-error": String(f.error) });
    g.append(el("text", { x: L - 8, y: y + 15, "text-anchor": "end", fill: "#1d2330", "font-weight": f.listed ? "bold" : "normal", text: f.name }));
    for (const [v, yy, color, label] of [[f.value, y, "#c53030", "received"], [f.reconstruction, y + 15, "#90a4c0", "expected"]]) {
      g.append(el("rect", { x: Math.min(X(0), X(v)), y: yy, width: Math.max(Math.abs(X(v) - X(0)), 1), height: 12, fill: color }, el("title", { text: `${label} ${v}` })));
    }
    g.append(el("text", { x: W - R + 10, y: y + 11, fill: "#1d2330", text: `${fmt(f.value)} received, ${fmt(f.reconstruction)} expected` }));
    g.append(el("text", { x: W - R + 10, y: y + 25, text: full ? `${(100 * f.share).toFixed(1)}% of the score` : `squared error ${fmt(f.error)}` }));
    svg.append(g);
  });
  svg.append(el("text", { x: X(0), y: H - 4, "text-anchor": "middle", text: "0" }));
  const notes = [];
  if (full) {
    notes.push(ex.whitened ? "The score weighs each feature's standardized error by how the features usually vary together: a feature's term is its error times the weighted errors of all, so terms can be negative; they add up to the score. The alert itself lists the features with the largest squared errors, which can rank differently." : "The score is the sum of the features' squared standardized errors; each term is one feature's.");
    if (more) notes.push(`${more} features with smaller terms are not drawn.`);
    if (!ex.matches) notes.push(`Recomputed from the record and version ${a.model.version}, the score is ${fmt(ex.score)}, not the alert's ${fmt(a.score)}: the record or the model read back is not the one scored.`);
  } else {
    notes.push("The features the alert lists, with their squared standardized errors." + (ex && ex.error ? " Every feature's part of the score could not be recomputed: " + ex.error : ""));
  }
  return el("div", {}, svg, el("div", { class: "legend" }, swatch("#c53030", "received value"), swatch("#90a4c0", "the model's reconstruction (same units)"), el("span", { text: "bold: listed in the alert" })),
    ...notes.map(n => el("p", { class: "muted", text: n })));
}
function swatch(c, name) { const i = el("i"); i.style.background = c; return el("span", {}, i, name); }

function neighbours(a, pts) {
  if (!pts.length) return el("p", { class: "muted", text: "No scores of this key are kept: the scorers write no scores topic, or the key has not been seen in the console's window." });
  const own = pts.find(p => p.id === a.id);
  // x: the record's place in the key's sequence, this alert's at 0.
  const at0 = own ? pts.indexOf(own) : pts.length;
  const chart = lineChart([{ name: "score", pts: pts.map((p, i) => [i - at0, p.score]) }], {
    log: true, xNumeric: true, xLabel: "records of this key before (−) and after (+) the alert", hlines: [{ y: a.threshold, label: "threshold" }],
    marks: own ? [{ x: 0, y: own.score, label: "this alert" }] : [], tall: false,
  });
  const at = own ? pts.indexOf(own) : pts.length - 1;
  const rows = pts.slice(Math.max(0, at - 5), at + 6).map(p => el("tr", { class: p.id === a.id ? "new" : "" }, el("td", { text: clock(p.t) }), el("td", { class: "num", text: fmt(p.score) }), el("td", { text: p.alert ? "alert" : "", class: "bad" }), el("td", { text: "v" + p.version }), el("td", { class: "muted", text: p.id })));
  return el("div", {}, chart, own ? null : el("p", { class: "muted", text: "This alert's own score is not among them (the scores topic did not have it)." }),
    el("table", {}, el("tr", {}, el("th", { text: "time" }), el("th", { class: "num", text: "score" }), el("th", { text: "" }), el("th", { text: "model" }), el("th", { text: "record" })), rows));
}

// ---- scores

async function scoresPage(main) {
  let d;
  try { d = await getJSON("api/scores"); } catch (e) { main.replaceChildren(el("div", { class: "notice bad", text: e.message })); return; }
  if (S.page !== "scores") return;
  const hist = histogram(d);
  const hpts = d.history.filter(p => p.max > 0);
  const pct = d.count ? (100 * d.above / d.count) : 0;
  main.replaceChildren(el("h1", { text: "Scores" }),
    el("p", { class: "help", text: "A record's score is its squared reconstruction error in standardized units, weighted by how the features usually vary together: small for ordinary records, large for unusual ones. Both scales are logarithmic. Just after a new model version the distribution still holds the older version's scores, which can sit apart from the new one's." }),
    el("div", { class: "grid" },
      card("Distribution of recent scores", d.count ? `${fmtInt(d.count)} most recent scores; ${fmtInt(d.above)} (${pct.toFixed(2)}%) above the threshold ${fmt(d.threshold)}` + (d.zero ? `; ${fmtInt(d.zero)} exactly 0, not drawn` : "") : "no scores read (scorers write them with --scores-topic)", hist),
      card("Scores over time", "each second's median, 99th percentile and largest score, with the threshold",
        lineChart([{ name: "median", pts: hpts.map(p => [p.t, p.p50]) }, { name: "99th percentile", pts: hpts.map(p => [p.t, p.p99]) }, { name: "largest", pts: hpts.map(p => [p.t, p.max]), color: "#a0aec0" },
          { name: "threshold", pts: d.history.filter(p => p.threshold > 0).map(p => [p.t, p.threshold]), color: "#c53030", step: true }], { log: true, tall: true }))));
}

function histogram(d) {
  const W = 640, H = 260, L = 56, R = 12, T = 10, B = 34;
  const svg = el("svg", { class: "chart tall", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", id: "score-histogram" });
  if (!d.bins.length) { svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: "no scores yet" })); return svg; }
  const l0 = Math.log10(d.bins[0].lo), l1 = Math.log10(d.bins[d.bins.length - 1].hi);
  const X = v => L + (Math.log10(v) - l0) / (l1 - l0) * (W - L - R);
  const top = Math.max(...d.bins.map(b => b.count), 1);
  const Y = c => T + (1 - Math.log10(1 + c) / Math.log10(1 + top)) * (H - T - B);
  for (const b of d.bins) {
    if (!b.count) continue;
    svg.append(el("rect", { x: X(b.lo), y: Y(b.count), width: Math.max(X(b.hi) - X(b.lo) - 1, 1), height: H - B - Y(b.count), fill: b.lo >= d.threshold && d.threshold > 0 ? "#c53030" : "#2b6cb0" }, el("title", { text: `${fmt(b.lo)} – ${fmt(b.hi)}: ${b.count}` })));
  }
  for (let e = Math.ceil(l0); e <= Math.floor(l1); e++) svg.append(el("text", { x: X(Math.pow(10, e)), y: H - 18, "text-anchor": "middle", text: tick(Math.pow(10, e)) }));
  svg.append(el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", text: "score (log scale); bar height: count (log scale)" }));
  for (const c of [1, 10, 100, 1000, 10000]) if (c <= top) svg.append(el("text", { x: L - 6, y: Y(c) + 4, "text-anchor": "end", text: fmtInt(c) }));
  if (d.threshold > 0) {
    const x = X(d.threshold);
    svg.append(el("line", { x1: x, x2: x, y1: T, y2: H - B, stroke: "#c53030", "stroke-width": 2, "stroke-dasharray": "6 4", id: "threshold-line", "data-threshold": String(d.threshold) }));
    svg.append(el("text", { x: x + 4, y: T + 12, fill: "#c53030", text: "threshold " + fmt(d.threshold) }));
  }
  return svg;
}

// ---- models

const RB = { pending: null, result: null, error: null };
async function modelsPage(main) {
  let d;
  try { d = await getJSON("api/models"); } catch (e) { main.replaceChildren(el("div", { class: "notice bad", text: e.message })); return; }
  if (S.page !== "models") return;
  const token = document.getElementById("token");
  const tokenValue = token ? token.value : (sessionStorage.getItem("recon-token") || "");
  const kids = [el("h1", { text: "Models" }),
    el("p", { class: "help", text: "Every stored checkpoint version, newest first. A rollback makes the coordinator continue training from an older version's parameters, published at once as a new version that every scorer then loads." })];
  kids.push(el("p", {}, "Newest version: ", el("strong", { id: "model-latest", text: "v" + (d.latest || "–") })));
  if (d.error) kids.push(el("div", { class: "notice bad", text: d.error }));
  if (RB.result) {
    const v = RB.result.published, active = d.scorers.filter(s => Date.now() - s.last_seen < 30000);
    const on = active.filter(s => s.version >= v).length;
    kids.push(el("div", { class: "notice", id: "rollback-status", "data-published": v, "data-scorers-on": on, "data-scorers": active.length },
      `Rolled back to v${RB.result.from}: the coordinator published v${v}. Active scorers on v${v} or newer: ${on} of ${active.length}` + (on === active.length && active.length ? " — every scorer has it." : " — waiting for the others.")));
  }
  if (RB.error) kids.push(el("div", { class: "notice bad", id: "rollback-error", text: RB.error }));
  if (d.rollback) kids.push(el("div", { class: "filters" }, el("label", {}, "rollback token", el("input", { id: "token", type: "password", autocomplete: "off", value: tokenValue, placeholder: "the console's token" }))));
  const rows = d.models.map(m => el("tr", { "data-version": m.version },
    el("td", { class: "num" }, el("strong", { text: "v" + m.version })), el("td", { text: stamp(m.created_at) }), el("td", { class: "num", text: fmtInt(m.round) }),
    el("td", { class: "num", text: m.loss ? fmt(m.loss) : "–" }), el("td", { class: "num", text: m.threshold ? fmt(m.threshold) : "not set" }), el("td", { text: m.variant || "" }),
    el("td", {}, m.version === d.latest ? el("span", { class: "pill live", text: "latest" }) : null, m.pinned ? el("span", { class: "pill pinned", title: "a rollback target: never pruned", text: "pinned" }) : null, m.error ? el("span", { class: "bad", text: m.error }) : null),
    d.rollback ? el("td", {}, m.version === d.latest || m.error ? null : el("button", { class: "secondary rollback-btn", "data-version": m.version, "data-threshold": String(m.threshold), disabled: RB.pending !== null, text: "Roll back to v" + m.version, on: { click: () => rollback(m.version, m.threshold) } })) : null));
  kids.push(el("div", { class: "card" }, el("table", { id: "models-table" }, el("tr", {}, el("th", { class: "num", text: "version" }), el("th", { text: "written" }), el("th", { class: "num", text: "round" }), el("th", { class: "num", text: "loss" }), el("th", { class: "num", text: "threshold" }), el("th", { text: "variant" }), el("th", { text: "" }), d.rollback ? el("th", { text: "" }) : null), rows)));
  kids.push(el("div", { class: "card" }, el("h2", { text: "Scorers" }), scorersTable(d.scorers, d.latest)));
  const focused = document.activeElement && document.activeElement.id === "token";
  main.replaceChildren(...kids);
  if (focused) document.getElementById("token").focus();
}

async function rollback(version, threshold) {
  const tok = (document.getElementById("token") || {}).value || "";
  const warn = threshold ? "" : `\n\nVersion ${version} has no threshold: the new version will raise no alert until the coordinator sets one.`;
  if (!confirm(`Roll back to version ${version}? Training continues from its parameters and every scorer switches to the new version.` + warn)) return;
  RB.pending = version; RB.error = null; RB.result = null;
  try {
    const r = await fetch("api/rollback", { method: "POST", headers: { "Content-Type": "application/json", "Authorization": "Bearer " + tok }, body: JSON.stringify({ version }) });
    const b = await r.json();
    if (!r.ok) throw new Error(`${r.status}: ${b.error || r.statusText}`);
    RB.result = b;
    sessionStorage.setItem("recon-token", tok);
  } catch (e) { RB.error = "Rollback refused: " + e.message; }
  RB.pending = null;
  render(false, true);
}

window.addEventListener("hashchange", route);
route();
connect();
