// Weir's dashboard: reads the JobManager's JSON API (/api/...) every second
// and draws it. Plain DOM, no framework: every text goes in by textContent.
"use strict";

const POLL_MS = 1000;
const HISTORY = 120; // samples kept for the sparklines

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}

// ---- API ----

class APIError extends Error {}

async function api(path, method, body) {
  const opts = { method: method || "GET", headers: {} };
  const token = sessionStorage.getItem("weir-token");
  if (token) opts.headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch("api/" + path, opts);
  } catch (e) {
    throw new APIError("the dashboard's server does not answer: " + e.message);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? data.error : text || resp.statusText;
    throw new APIError(resp.status + ": " + msg);
  }
  return data;
}

// showError shows msg in the banner (none: hides it). A 401 or 403 adds a
// field for the bearer token the JobManager's --auth-tokens lists; it is
// kept in this tab's session storage and sent with every call.
function showError(msg) {
  const e = $("#error");
  if ((msg || "") === e.dataset.msg) return; // keep a token being typed
  e.dataset.msg = msg || "";
  if (!msg) { e.hidden = true; e.replaceChildren(); return; }
  e.hidden = false;
  e.replaceChildren(document.createTextNode(msg));
  if (/^40[13]:/.test(msg)) {
    const input = el("input", { type: "password", id: "token", placeholder: "bearer token", size: "32" });
    e.append(el("div", { class: "row" }, document.createTextNode("Token: "), input,
      el("button", { id: "token-save", text: "Use token", onclick: () => {
        sessionStorage.setItem("weir-token", input.value.trim());
        route();
      } })));
  }
}

// ---- formatting ----

function fmtTime(ms) {
  if (!ms) return "-";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function fmtDur(ms) {
  if (ms == null) return "-";
  if (ms < 1) return (ms * 1000).toFixed(0) + " µs";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  return (ms / 60000).toFixed(1) + " min";
}
function fmtBytes(n) {
  if (n == null) return "-";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}
function fmtRate(r) {
  if (r == null || !isFinite(r)) return "-";
  if (r >= 1e6) return (r / 1e6).toFixed(2) + " M/s";
  if (r >= 1e3) return (r / 1e3).toFixed(1) + " k/s";
  return r.toFixed(r < 10 ? 1 : 0) + " /s";
}
function fmtPct(f) { return f == null ? "-" : (f * 100).toFixed(0) + " %"; }
function ago(ms, now) {
  if (!ms) return "-";
  const d = Math.max(0, (now || Date.now()) - ms);
  return d < 1000 ? "now" : fmtDur(d) + " ago";
}
function stateBadge(state, text) { return el("span", { class: "state " + state, text: text || state }); }

// Green (idle) through yellow to red (backpressured or saturated).
function heatColor(f) {
  f = Math.max(0, Math.min(1, f || 0));
  const h = 130 - 130 * f;
  return `hsl(${h}, 65%, ${88 - 30 * f}%)`;
}

// ---- rates: differences between two reads of cumulative counters ----

const samples = new Map(); // job id -> {t, subtasks: Map("v/i" -> counters), rates}
const history = new Map(); // job id -> [{t, rate, p50, p99}]

// computeRates compares the subtasks' counters with the last read that
// differed: the JobManager refreshes them once per heartbeat, so a read
// between two heartbeats keeps the rates of the last change.
function computeRates(job) {
  const prev = samples.get(job.id);
  const cur = new Map();
  let changed = !prev;
  for (const v of job.vertices) {
    for (const s of v.subtasks) {
      const key = v.id + "/" + s.index;
      cur.set(key, s);
      const p = prev && prev.subtasks.get(key);
      if (!p || p.attempt !== s.attempt || p.busyNs !== s.busyNs || p.idleNs !== s.idleNs || p.recordsIn !== s.recordsIn || p.recordsOut !== s.recordsOut ||
          String(p.keyGroupRecords) !== String(s.keyGroupRecords)) changed = true;
    }
  }
  if (!changed) return prev.rates;
  const rates = new Map(); // "v/i" -> {busy, idle, bp, inRate, outRate}
  if (prev && job.nowMs > prev.t) {
    const dt = (job.nowMs - prev.t) / 1000;
    for (const [key, s] of cur) {
      const p = prev.subtasks.get(key);
      if (!p || p.attempt !== s.attempt) continue;
      const db = s.busyNs - p.busyNs, di = s.idleNs - p.idleNs, dp = s.backpressuredNs - p.backpressuredNs;
      const total = db + di + dp;
      let kgRates = null;
      if (s.keyGroupRecords && p.keyGroupRecords && s.keyGroupRecords.length === p.keyGroupRecords.length &&
          s.keyGroupRecordsFirst === p.keyGroupRecordsFirst) {
        kgRates = s.keyGroupRecords.map((n, j) => Math.max(0, (n - p.keyGroupRecords[j]) / dt));
      }
      rates.set(key, {
        busy: total > 0 ? db / total : null,
        idle: total > 0 ? di / total : null,
        bp: total > 0 ? dp / total : null,
        inRate: Math.max(0, (s.recordsIn - p.recordsIn) / dt),
        outRate: Math.max(0, (s.recordsOut - p.recordsOut) / dt),
        kgRates,
      });
    }
  }
  samples.set(job.id, { t: job.nowMs, subtasks: cur, rates });
  return rates;
}

function vertexRates(v, rates) {
  let busy = 0, bp = 0, n = 0, inRate = 0, outRate = 0, known = false;
  for (const s of v.subtasks) {
    const r = rates.get(v.id + "/" + s.index);
    if (!r) continue;
    known = true;
    inRate += r.inRate; outRate += r.outRate;
    if (r.busy != null) { busy = Math.max(busy, r.busy); bp = Math.max(bp, r.bp); n++; }
  }
  return known ? { busy: n ? busy : null, bp: n ? bp : null, inRate, outRate } : null;
}

// ---- routing and polling ----

let timer = null;
let generation = 0;
// actionError is a refused action's reason: it stays in the page until the
// next action or page, while reads go on.
let actionError = null;

function route() {
  const h = location.hash || "#/";
  const m = h.match(/^#\/job\/([0-9a-zA-Z_-]+)/);
  generation++;
  clearTimeout(timer);
  $("#main").replaceChildren();
  actionError = null;
  showError(null);
  const gen = generation;
  const tick = async () => {
    try {
      if (m) await renderJob(m[1], gen);
      else await renderOverview(gen);
      if (gen === generation) { showError(actionError); $("#live").classList.remove("stale"); }
    } catch (e) {
      if (gen !== generation) return;
      showError(e.message);
      $("#live").classList.add("stale");
      if (!(e instanceof APIError)) console.warn(e);
    }
    if (gen === generation) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

async function renderClusterInfo(c) {
  const parts = [];
  if (c.servedBy) parts.push("served by " + c.servedBy);
  if (c.leaderId) parts.push("leader " + c.leaderId + (c.leaderAddress ? " (" + c.leaderAddress + ")" : ""));
  parts.push("term " + c.term);
  $("#cluster-info").textContent = parts.join(" · ");
}

// ---- overview: jobs and TaskManagers ----

async function renderOverview(gen) {
  const [jobs, cluster] = await Promise.all([api("jobs"), api("cluster")]);
  if (gen !== generation) return;
  renderClusterInfo(cluster);
  const main = $("#main");
  const frag = document.createDocumentFragment();
  if (cluster.servedBy && cluster.leaderId && cluster.servedBy !== cluster.leaderId) {
    frag.append(el("div", { class: "notice", text: `This JobManager (${cluster.servedBy}) is a follower: what this page shows and does goes through the leader, ${cluster.leaderId}.` }));
  }
  frag.append(el("h1", { text: "Jobs" }));
  const rows = jobs.jobs.slice().sort((a, b) => b.submitTimeMs - a.submitTimeMs).map((j) =>
    el("tr", { "data-job": j.id },
      el("td", {}, el("a", { href: "#/job/" + j.id, text: j.id })),
      el("td", { text: j.name }),
      el("td", {}, stateBadge(j.state, j.stateText)),
      el("td", { class: "num", text: String(j.parallelism) }),
      el("td", { class: "num", text: String(j.restarts) }),
      el("td", { text: fmtTime(j.submitTimeMs) }),
      el("td", { text: j.endTimeMs ? fmtDur(j.endTimeMs - j.startTimeMs) : j.startTimeMs ? fmtDur(jobs.nowMs - j.startTimeMs) : "-" })));
  frag.append(rows.length ? el("table", { id: "jobs" },
    el("thead", {}, el("tr", {}, ...["Job ID", "Name", "State", "Parallelism", "Restarts", "Submitted", "Duration"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows)) : el("p", { class: "muted", id: "jobs", text: "No jobs. Submit one with weir job submit NAME." }));

  frag.append(el("h2", { text: "TaskManagers" }));
  const tms = cluster.taskManagers.map((tm) =>
    el("tr", { "data-taskmanager": tm.id },
      el("td", { text: tm.id }), el("td", { text: tm.address }),
      el("td", { class: "num", text: String(tm.slots) }), el("td", { class: "num", text: String(tm.freeSlots) }),
      el("td", { text: ago(tm.lastHeartbeatMs, jobs.nowMs) })));
  frag.append(tms.length ? el("table", { id: "taskmanagers" },
    el("thead", {}, el("tr", {}, ...["ID", "Address", "Slots", "Free", "Last heartbeat"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...tms)) : el("p", { class: "muted", text: "No TaskManager is registered." }));

  frag.append(el("h2", { text: "JobManagers" }));
  frag.append(el("table", { id: "members" },
    el("thead", {}, el("tr", {}, ...["ID", "Role", "Client address", "Raft address"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...cluster.members.map((m) => el("tr", {},
      el("td", { text: m.id }), el("td", { text: m.id === cluster.leaderId ? "leader" : m.suffrage }),
      el("td", { text: m.clientAddress || "-" }), el("td", { text: m.raftAddress }))))));
  main.replaceChildren(frag);
}

// ---- one job ----

let lastCheckpoints = { t: 0, data: null, job: null };
let lastKeyGroups = { t: 0, data: null, job: null, error: null };
let heatMode = "rate";
let actionResult = null; // {job, text, ok}

async function renderJob(id, gen) {
  const [job, cluster] = await Promise.all([api("jobs/" + encodeURIComponent(id)), api("cluster")]);
  if (gen !== generation) return;
  renderClusterInfo(cluster);
  const now = Date.now();
  if (lastCheckpoints.job !== id || now - lastCheckpoints.t > 3000) {
    lastCheckpoints = { t: now, job: id, data: await api("jobs/" + encodeURIComponent(id) + "/checkpoints") };
  }
  if (lastKeyGroups.job !== id || now - lastKeyGroups.t > 5000) {
    try {
      lastKeyGroups = { t: now, job: id, data: await api("jobs/" + encodeURIComponent(id) + "/keygroups"), error: null };
    } catch (e) {
      lastKeyGroups = { t: now, job: id, data: null, error: e.message };
    }
  }
  if (gen !== generation) return;
  const rates = computeRates(job);
  recordHistory(job, rates);

  const frag = document.createDocumentFragment();
  frag.append(el("h1", {}, document.createTextNode(job.name + " "), stateBadge(job.state, job.stateText),
    el("span", { class: "muted", text: "  " + job.id })));
  frag.append(renderFacts(job));
  frag.append(renderActions(job));
  if (actionResult && actionResult.job === job.id) frag.append(el("div", { class: "result", id: "action-result", text: actionResult.text }));
  frag.append(el("h2", { text: "Graph" }));
  frag.append(renderLegend());
  frag.append(renderGraph(job, rates));
  if (job.graphError) frag.append(el("p", { class: "muted", text: job.graphError }));
  frag.append(el("h2", { text: "Throughput and latency" }));
  frag.append(renderSparks(job));
  frag.append(el("h2", { text: "Subtasks" }));
  frag.append(renderSubtasks(job, rates));
  frag.append(el("h2", { text: "Key groups" }));
  frag.append(renderKeyGroups(job, rates));
  frag.append(el("h2", { text: "Checkpoints" }));
  frag.append(renderCheckpoints(job, lastCheckpoints.data));
  // Keep a focused input (the rescale field) across redraws.
  const focused = document.activeElement && document.activeElement.id;
  const rescaleValue = $("#rescale-to") ? $("#rescale-to").value : null;
  $("#main").replaceChildren(frag);
  if (rescaleValue !== null && $("#rescale-to")) $("#rescale-to").value = rescaleValue;
  if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
}

function renderFacts(job) {
  const f = el("div", { class: "card facts" });
  const add = (k, v) => f.append(el("div", {}, el("span", { text: k }), document.createTextNode(v)));
  add("parallelism", String(job.parallelism));
  add("max parallelism", String(job.maxParallelism));
  add("attempt", String(job.attempt));
  add("restarts", String(job.restarts));
  add("submitted", fmtTime(job.submitTimeMs));
  add("started", fmtTime(job.startTimeMs));
  if (job.endTimeMs) add("ended", fmtTime(job.endTimeMs));
  add("checkpoints", job.checkpointIntervalMs ? "every " + fmtDur(job.checkpointIntervalMs) + (job.checkpointsIncremental ? " (incremental)" : "") : "off");
  const params = Object.keys(job.params).sort().map((k) => k + "=" + job.params[k]).join(" ");
  if (params) add("params", params);
  if (job.rescale) add("rescale", `${job.rescale.from} → ${job.rescale.to}: ${job.rescale.phase.toLowerCase()}` + (job.rescale.reason ? " (" + job.rescale.reason + ")" : ""));
  if (job.failure) add("failure", job.failure);
  return f;
}

const TERMINAL = new Set(["FINISHED", "CANCELED", "FAILED"]);

function renderActions(job) {
  const box = el("div", { class: "actions" });
  if (TERMINAL.has(job.state)) {
    box.append(el("span", { class: "muted", text: "The job has ended: its checkpoints can resume it (weir job submit --from-savepoint PATH)." }));
    return box;
  }
  const act = (label, id, run) => el("button", { id, text: label, onclick: run });
  box.append(
    act("Savepoint", "action-savepoint", () => confirmAction(`Take a savepoint of ${job.name} (${job.id})?`,
      targetField(), (extra) => api(`jobs/${job.id}/savepoint`, "POST", { target: extra.target }), job,
      (r) => "Savepoint written: " + r.savepointPath)),
    act("Stop with savepoint", "action-stop", () => confirmAction(`Stop ${job.name} (${job.id}) with a savepoint? The job finishes after it.`,
      [targetField(), drainField()], (extra) => api(`jobs/${job.id}/stop`, "POST", { target: extra.target, drain: extra.drain }), job,
      (r) => "Stopped with savepoint " + r.savepointPath)),
    el("span", {}, document.createTextNode("rescale to "),
      el("input", { type: "number", id: "rescale-to", min: "1", value: String(job.parallelism) }), document.createTextNode(" ")),
    act("Rescale", "action-rescale", () => {
      const n = parseInt($("#rescale-to").value, 10);
      confirmAction(`Rescale ${job.name} (${job.id}) from ${job.parallelism} to ${n}? It stops with a savepoint and restarts from it.`,
        null, () => api(`jobs/${job.id}/rescale`, "POST", { parallelism: n }), job,
        (r) => "Rescaled through savepoint " + r.savepointPath);
    }),
    act("Cancel", "action-cancel", () => confirmAction(`Cancel ${job.name} (${job.id})? Its processing stops; checkpoints are kept.`,
      null, () => api(`jobs/${job.id}/cancel`, "POST", {}), job, (r) => "Job " + r.state.toLowerCase())));
  return box;
}

function targetField() {
  return el("label", {}, document.createTextNode("target (empty: the JobManager's --savepoint-dir) "),
    el("input", { type: "text", name: "target", id: "confirm-target", size: "40" }));
}
function drainField() {
  return el("label", {}, el("input", { type: "checkbox", name: "drain", id: "confirm-drain" }),
    document.createTextNode(" drain: fire pending timers first"));
}

function confirmAction(text, extra, run, job, describe) {
  const d = $("#confirm");
  $("#confirm-text").textContent = text;
  const box = $("#confirm-extra");
  box.replaceChildren();
  if (extra) box.append(...(Array.isArray(extra) ? extra : [extra]));
  d.returnValue = "";
  d.onclose = async () => {
    if (d.returnValue !== "ok") return;
    const values = { target: ($("#confirm-target") || {}).value || "", drain: !!($("#confirm-drain") || {}).checked };
    actionResult = { job: job.id, text: "Working…" };
    actionError = null;
    showError(null);
    try {
      const r = await run(values);
      actionResult = { job: job.id, text: describe(r) };
    } catch (e) {
      actionResult = null;
      actionError = e.message;
      showError(actionError);
    }
    // Draw the outcome at once.
    const res = $("#action-result");
    if (res && !actionResult) res.remove();
    else if (res) res.textContent = actionResult.text;
    else if (actionResult && actionResult.job === job.id) {
      const a = document.querySelector(".actions");
      if (a) a.after(el("div", { class: "result", id: "action-result", text: actionResult.text }));
    }
  };
  d.showModal();
}

function renderLegend() {
  return el("div", { class: "legend" },
    el("span", {}, el("i", { style: "background:" + heatColor(0) }), document.createTextNode("idle")),
    el("span", {}, el("i", { style: "background:" + heatColor(0.5) }), document.createTextNode("busy")),
    el("span", {}, el("i", { style: "background:" + heatColor(1) }), document.createTextNode("backpressured or saturated")),
    el("span", { text: "colour: the highest of a vertex's subtasks, max(backpressured, busy) of the last second" }));
}

// Lays vertices out in columns by their distance from a source.
function layout(job) {
  const depth = new Map(job.vertices.map((v) => [v.id, 0]));
  for (let pass = 0; pass < job.vertices.length; pass++) {
    for (const e of job.edges) depth.set(e.target, Math.max(depth.get(e.target) || 0, (depth.get(e.source) || 0) + 1));
  }
  const cols = [];
  for (const v of job.vertices) {
    const d = depth.get(v.id) || 0;
    (cols[d] = cols[d] || []).push(v);
  }
  const W = 230, H = 74, GX = 90, GY = 30, PAD = 20;
  const pos = new Map();
  cols.forEach((col, c) => col.forEach((v, r) => pos.set(v.id, { x: PAD + c * (W + GX), y: PAD + r * (H + GY), w: W, h: H })));
  const width = PAD * 2 + cols.length * W + (cols.length - 1) * GX;
  const height = PAD * 2 + Math.max(...cols.map((c) => c.length)) * (H + GY) - GY;
  return { pos, width, height };
}

function renderGraph(job, rates) {
  if (!job.vertices.length) return el("p", { class: "muted", text: "The job has no vertices to draw." });
  const { pos, width, height } = layout(job);
  const root = svg("svg", { id: "graph", width: String(width), height: String(height), viewBox: `0 0 ${width} ${height}` });
  const defs = svg("defs", {}, svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
    svg("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#8592a6" })));
  root.append(defs);
  for (const e of job.edges) {
    const a = pos.get(e.source), b = pos.get(e.target);
    if (!a || !b) continue;
    const x1 = a.x + a.w, y1 = a.y + a.h / 2, x2 = b.x, y2 = b.y + b.h / 2, mx = (x1 + x2) / 2;
    const g = svg("g", { class: "edge-group", "data-edge": `${e.source}->${e.target}`, "data-partitioning": e.partitioning });
    g.append(svg("path", { class: "edge", d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2 - 2} ${y2}`, "marker-end": "url(#arrow)" }));
    // The label sits by the arrow's head, where fanned-out edges part.
    g.append(svg("text", { class: "elabel", x: String(x2 - 8), y: String(y2 - 6), "text-anchor": "end", text: e.partitioning.toUpperCase() }));
    root.append(g);
  }
  for (const v of job.vertices) {
    const p = pos.get(v.id);
    const r = vertexRates(v, rates);
    const load = r && r.busy != null ? Math.max(r.bp, r.busy) : 0;
    const g = svg("g", { class: "vertex", "data-vertex": v.name, "data-parallelism": String(v.parallelism), transform: `translate(${p.x},${p.y})` });
    g.append(svg("title", { text: `${v.name}\noperators: ${v.operators.map((o) => o.name + " [" + o.uid + "]").join(" → ")}` }));
    g.append(svg("rect", { width: String(p.w), height: String(p.h), rx: "7", fill: r ? heatColor(load) : "#eef0f3", stroke: "#7a8699" }));
    const name = v.name.length > 28 ? v.name.slice(0, 27) + "…" : v.name;
    g.append(svg("text", { class: "vname", x: "10", y: "20", text: name }));
    g.append(svg("text", { x: "10", y: "39", text: `parallelism ${v.parallelism}` + (v.inputPartitioning ? ` · in: ${v.inputPartitioning}` : " · source") }));
    const line3 = r ? `busy ${fmtPct(r.busy)} · backpressured ${fmtPct(r.bp)}` : "no metrics yet";
    g.append(svg("text", { x: "10", y: "56", text: line3 }));
    const out = r ? `in ${fmtRate(r.inRate)} · out ${fmtRate(r.outRate)}` : "";
    const wm = v.watermarkMs != null ? ` · wm ${fmtTime(v.watermarkMs).slice(11)}` : "";
    g.append(svg("text", { x: "10", y: "70", "font-size": "11", fill: "#4a5568", text: out + wm }));
    root.append(g);
  }
  return el("div", { class: "graph" }, root);
}

function recordHistory(job, rates) {
  const h = history.get(job.id) || [];
  // Throughput: records out of the source vertices, records in of the rest
  // would double count, so the sum over sources.
  let inRate = null;
  for (const v of job.vertices) {
    if (v.inputPartitioning) continue;
    const r = vertexRates(v, rates);
    if (r) inRate = (inRate || 0) + r.outRate;
  }
  const lat = job.latency || {};
  const last = h[h.length - 1];
  if (!last || job.nowMs - last.t >= POLL_MS * 0.9) {
    h.push({ t: job.nowMs, rate: inRate, p50: lat.p50Ns != null ? lat.p50Ns / 1e6 : null, p99: lat.p99Ns != null ? lat.p99Ns / 1e6 : null });
    if (h.length > HISTORY) h.shift();
  }
  history.set(job.id, h);
}

function sparkline(values, cls) {
  const W = 220, H = 40;
  const vs = values.map((v) => (v == null ? null : v));
  const known = vs.filter((v) => v != null);
  const maxV = Math.max(1e-9, ...known);
  const pts = [];
  vs.forEach((v, i) => { if (v != null) pts.push(`${(i / Math.max(1, HISTORY - 1)) * W},${H - 2 - (v / maxV) * (H - 4)}`); });
  return svg("polyline", { class: cls || "", points: pts.join(" ") });
}

function renderSparks(job) {
  const h = history.get(job.id) || [];
  const box = el("div", { class: "sparks" });
  const cur = h[h.length - 1] || {};
  const t = svg("svg", { width: "220", height: "40", id: "spark-throughput" }, sparkline(h.map((s) => s.rate)));
  box.append(el("div", { class: "spark" }, el("div", { class: "label", text: "records/s out of the sources" }),
    el("div", { class: "value", text: fmtRate(cur.rate) }), t));
  const l = svg("svg", { width: "220", height: "40", id: "spark-latency" }, sparkline(h.map((s) => s.p50)), sparkline(h.map((s) => s.p99), "p99"));
  box.append(el("div", { class: "spark" }, el("div", { class: "label", text: "latency source → sink: p50 (blue), p99 (amber)" }),
    el("div", { class: "value", text: cur.p50 != null ? `${fmtDur(cur.p50)} / ${fmtDur(cur.p99)}` : "no markers yet" }), l));
  const wms = job.vertices.filter((v) => v.watermarkMs != null);
  if (wms.length) {
    const low = Math.min(...wms.map((v) => v.watermarkMs));
    box.append(el("div", { class: "spark" }, el("div", { class: "label", text: "lowest watermark" }),
      el("div", { class: "value", text: fmtTime(low) }), el("div", { class: "label", text: "lag " + fmtDur(job.nowMs - low) })));
  }
  return box;
}

function bar(f, color) {
  return el("span", { class: "bar", title: fmtPct(f) }, el("b", { style: `width:${Math.round((f || 0) * 100)}%;background:${color}` }));
}

function renderSubtasks(job, rates) {
  const rows = [];
  for (const v of job.vertices) {
    for (const s of v.subtasks) {
      const r = rates.get(v.id + "/" + s.index) || {};
      rows.push(el("tr", { "data-subtask": `${v.id}/${s.index}` },
        el("td", { text: v.name }),
        el("td", { class: "num", text: `${s.index + 1}/${v.parallelism}` }),
        el("td", {}, stateBadge(s.state)),
        el("td", { text: s.taskManagerId ? `${s.taskManagerId} (${s.address})` : "not placed" }),
        el("td", { class: "num", text: s.taskManagerId ? String(s.slot) : "-" }),
        el("td", { text: s.keyGroupLast >= s.keyGroupFirst ? `${s.keyGroupFirst}–${s.keyGroupLast}` : "-" }),
        el("td", {}, bar(r.busy, heatColor(0.5)), document.createTextNode(" " + fmtPct(r.busy))),
        el("td", {}, bar(r.bp, heatColor(1)), document.createTextNode(" " + fmtPct(r.bp))),
        el("td", { class: "num", text: fmtRate(r.inRate) }),
        el("td", { class: "num", text: fmtRate(r.outRate) }),
        el("td", { text: s.watermarkMs != null ? fmtTime(s.watermarkMs) : "-" }),
        el("td", { class: "num", text: String(s.attempt) }),
        el("td", { text: s.failure || "" })));
    }
  }
  return el("table", { id: "subtasks" },
    el("thead", {}, el("tr", {}, ...["Vertex", "Subtask", "State", "TaskManager", "Slot", "Key groups", "Busy", "Backpressured", "In", "Out", "Watermark", "Attempt", ""].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows));
}

// The key-group heat map: one grid per keyed vertex, a cell per key group,
// coloured by the records/s it received in the last interval or by its
// state bytes in the latest checkpoint; a cell's bottom edge tells the
// subtask that owns it.
function renderKeyGroups(job, rates) {
  const box = el("div", { class: "card", id: "keygroups" });
  const kg = lastKeyGroups.data;
  const keyed = job.vertices.filter((v) => v.subtasks.some((s) => s.keyGroupRecords));
  const stateOps = kg ? kg.operators : [];
  if (!keyed.length && !stateOps.length) {
    box.append(el("p", { class: "muted", text: "The job has no keyed operator (or its subtasks have not reported yet)." }));
    return box;
  }
  const radio = (value, label) => el("label", {}, el("input", { type: "radio", name: "heat", value, id: "heat-" + value,
    ...(heatMode === value ? { checked: "" } : {}), onchange: () => { heatMode = value; } }), document.createTextNode(" " + label));
  const source = kg && kg.checkpointId ? `state from checkpoint ${kg.checkpointId}` : "no checkpoint yet";
  box.append(el("div", { class: "row" },
    el("span", { class: "muted", text: `${job.maxParallelism} key groups · ${source} · colour by ` }),
    radio("rate", "records/s"), radio("bytes", "state bytes")));
  if (lastKeyGroups.error) box.append(el("p", { class: "muted", text: lastKeyGroups.error }));
  const cols = Math.min(64, job.maxParallelism);
  const vertices = keyed.length ? keyed : job.vertices.filter((v) => v.operators.some((o) => stateOps.some((s) => s.uid === o.uid)));
  for (const v of vertices) {
    const n = job.maxParallelism;
    const owner = new Array(n).fill(-1), rate = new Array(n).fill(0), total = new Array(n).fill(0), bytes = new Array(n).fill(0);
    for (const s of v.subtasks) {
      for (let g = Math.max(0, s.keyGroupFirst); g <= s.keyGroupLast && g < n; g++) owner[g] = s.index;
      const r = rates.get(v.id + "/" + s.index);
      (s.keyGroupRecords || []).forEach((c, j) => {
        const g = s.keyGroupRecordsFirst + j;
        if (g < 0 || g >= n) return;
        total[g] = c;
        if (r && r.kgRates) rate[g] = r.kgRates[j];
      });
    }
    const ops = stateOps.filter((o) => v.operators.some((vo) => vo.uid === o.uid));
    for (const o of ops) o.bytes.forEach((b, g) => { if (g < n) bytes[g] += b; });
    const values = heatMode === "bytes" ? bytes : rate;
    const maxV = Math.max(1e-9, ...values);
    const sumRate = rate.reduce((a, b) => a + b, 0), sumBytes = bytes.reduce((a, b) => a + b, 0);
    const hot = rate.indexOf(Math.max(...rate));
    let summary = `${v.name}: ${fmtRate(sumRate)} over its key groups`;
    if (sumRate > 0) summary += `, the busiest key group ${hot} takes ${fmtRate(rate[hot])} (${(100 * rate[hot] / sumRate).toFixed(0)} %)`;
    summary += ops.length ? ` · state ${fmtBytes(sumBytes)}, ${ops.reduce((a, o) => a + o.keys, 0)} keys` : " · no keyed state checkpointed yet";
    box.append(el("div", { class: "muted", text: summary }));
    const grid = el("div", { class: "heat", "data-vertex": v.name, style: `grid-template-columns: repeat(${cols}, 1fr)` });
    values.forEach((val, g) => {
      const i = owner[g];
      const title = `key group ${g}: ${fmtRate(rate[g])}, ${total[g]} records, ${fmtBytes(bytes[g])} of state` + (i >= 0 ? `; owned by subtask ${i + 1}` : "");
      const ownerColor = i >= 0 ? `hsl(${(i * 67) % 360}, 55%, 45%)` : "#eef0f3";
      grid.append(el("div", { title, "data-kg": String(g), style: `background:${val > 0 ? heatColor(val / maxV) : "#eef0f3"};border-bottom:4px solid ${ownerColor}` }));
    });
    box.append(grid);
  }
  box.append(el("p", { class: "muted", text: "Records/s per key group are counted by the keyed operator and sent with the heartbeats; state bytes per key group come from the latest checkpoint's state files. Hover a cell for its figures; its bottom edge is coloured by the subtask that owns it." }));
  return box;
}

function renderCheckpoints(job, cps) {
  const box = el("div", {});
  if (!cps) return box;
  const facts = el("div", { class: "card facts" });
  facts.append(el("div", {}, el("span", { text: "completed" }), document.createTextNode(String(job.completedCheckpoints))));
  facts.append(el("div", {}, el("span", { text: "failed" }), document.createTextNode(String(cps.failed))));
  facts.append(el("div", {}, el("span", { text: "restored from" }), document.createTextNode(cps.restored ? `${cps.restored.savepoint ? "savepoint" : "checkpoint"} ${cps.restored.id} (${cps.restored.path})` : "nothing (fresh start)")));
  box.append(facts);
  const rows = cps.checkpoints.slice().reverse().map((c) => el("tr", { "data-checkpoint": String(c.id) },
    el("td", { class: "num", text: String(c.id) }),
    el("td", { text: c.savepoint ? "savepoint" : "checkpoint" }),
    el("td", { text: fmtTime(c.triggerTimeMs) }),
    el("td", { class: "num", text: fmtDur(c.durationMs) }),
    el("td", { class: "num", text: fmtBytes(c.sizeBytes) }),
    el("td", { class: "num", text: fmtDur(c.maxAlignmentNs / 1e6) }),
    el("td", { class: "num", text: fmtDur(c.maxSyncNs / 1e6) }),
    el("td", { class: "muted", text: c.path })));
  box.append(rows.length ? el("table", { id: "checkpoints" },
    el("thead", {}, el("tr", {}, ...["ID", "Kind", "Triggered", "Duration", "Size", "Alignment", "Sync stall", "Path"].map((h) => el("th", { text: h })))),
    el("tbody", {}, ...rows)) : el("p", { class: "muted", text: "No retained checkpoint." }));
  return box;
}

window.addEventListener("hashchange", route);
route();
