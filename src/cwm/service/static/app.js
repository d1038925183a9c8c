// The cwm service page: a run list, and for one run a live view built from its Server-Sent Events.
"use strict";

const params = new URLSearchParams(location.search);
const token = params.get("token");
const auth = token ? { Authorization: "Bearer " + token } : {};
const withToken = (url) => (token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url);
const api = async (path) => {
  const r = await fetch(path, { headers: auth });
  if (!r.ok) throw new Error(path + ": " + r.status);
  return r.headers.get("Content-Type").includes("json") ? r.json() : r.text();
};
const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};
const colour = (score) => {
  if (score === null || score === undefined) return "#bbb";
  const s = Math.max(0, Math.min(1, score));
  return `hsl(${Math.round(120 * s)}, 70%, 45%)`;
};
const fmt = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? v.toFixed(4) : String(v));

let current = null; // { id, nodes: Map, curve: [], source, selected }

async function refreshRuns() {
  let runs;
  try {
    ({ runs } = await api("/v1/runs"));
  } catch (e) {
    const locked = e.message.endsWith(": 401");
    if (locked) clearInterval(poller); // asking again without the token only fails again
    $("notice").textContent = locked
      ? "This server needs its bearer token: open this page as /?token=TOKEN (printed at the server's first start, kept in DATA/token)."
      : "Cannot list the runs (" + e.message + "); retrying.";
    $("notice").hidden = false;
    return;
  }
  $("notice").hidden = true;
  const body = $("runs").querySelector("tbody");
  body.replaceChildren();
  for (const r of runs.slice().reverse()) {
    const s = r.summary || {};
    const p = s.progress || {};
    const tr = document.createElement("tr");
    tr.dataset.id = r.id;
    for (const text of [r.id, r.env, r.request.method, r.status, fmt(s.accuracy ?? p.best), s.llm_calls ?? p.calls ?? 0]) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    }
    tr.addEventListener("click", () => openRun(r.id));
    body.appendChild(tr);
  }
  if (!current && params.get("run")) openRun(params.get("run"));
}

function openRun(id) {
  if (current && current.source) current.source.close();
  current = { id, nodes: new Map([[0, { id: 0, parent: null, action: "root", score: null, depth: 0 }]]), curve: [], calls: 0, best: null, selected: null };
  $("run-pane").hidden = false;
  $("run-id").textContent = id;
  $("run-status").textContent = "";
  $("node-card").hidden = true;
  $("final-program").textContent = "(not yet)";
  $("final-meta").textContent = "";
  drawTree();
  drawCurve();
  const source = new EventSource(withToken(`/v1/runs/${id}/events`));
  current.source = source;
  source.onmessage = (msg) => onEvent(JSON.parse(msg.data));
  source.addEventListener("end", (msg) => {
    source.close();
    $("run-status").textContent = JSON.parse(msg.data).status;
    showFinal(id);
    refreshRuns();
  });
}

function onEvent(e) {
  if (!current) return;
  if (e.event === "llm.response" && !e.cached) current.calls += 1;
  if (e.event === "mcts.expand") {
    const depth = (current.nodes.get(e.parent)?.depth ?? 0) + 1;
    current.nodes.set(e.node, { id: e.node, parent: e.parent, action: e.action, score: e.score, heldout: e.heldout, bug: e.bug, depth, duplicate: !!e.duplicate });
    if (current.best === null || e.score > current.best) current.best = e.score;
    current.curve.push({ call: current.curve.length + 1, best: current.best });
    drawTree();
    drawCurve();
  }
  if (e.event === "run.summary") $("run-status").textContent = "finishing";
}

function layout() {
  const nodes = [...current.nodes.values()];
  const byDepth = new Map();
  for (const n of nodes) {
    if (!byDepth.has(n.depth)) byDepth.set(n.depth, []);
    byDepth.get(n.depth).push(n);
  }
  const maxDepth = Math.max(...byDepth.keys());
  const widest = Math.max(...[...byDepth.values()].map((a) => a.length));
  const w = Math.max(640, widest * 36 + 40), h = Math.max(160, (maxDepth + 1) * 60 + 20);
  for (const [d, row] of byDepth) {
    row.sort((a, b) => a.id - b.id);
    row.forEach((n, i) => { n.x = ((i + 1) * w) / (row.length + 1); n.y = 20 + d * 60; });
  }
  return { nodes, w, h };
}

function shape(n) {
  const a = { fill: colour(n.score), class: "node" + (current.selected === n.id ? " selected" : ""), "data-node": n.id };
  const r = 9;
  if (n.action === "generate" || n.action === "root") return svgEl("circle", { ...a, cx: n.x, cy: n.y, r });
  if (n.action === "improve") return svgEl("rect", { ...a, x: n.x - r, y: n.y - r, width: 2 * r, height: 2 * r });
  if (n.action === "fix") return svgEl("polygon", { ...a, points: `${n.x},${n.y - r} ${n.x + r},${n.y + r} ${n.x - r},${n.y + r}` });
  return svgEl("polygon", { ...a, points: `${n.x},${n.y - r} ${n.x + r},${n.y} ${n.x},${n.y + r} ${n.x - r},${n.y}` });
}

function drawTree() {
  const svg = $("tree");
  const { nodes, w, h } = layout();
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.replaceChildren();
  for (const n of nodes) {
    const p = n.parent === null ? null : current.nodes.get(n.parent);
    if (p) svg.appendChild(svgEl("line", { class: "edge", x1: p.x, y1: p.y, x2: n.x, y2: n.y }));
  }
  for (const n of nodes) {
    const s = shape(n);
    const title = svgEl("title", {});
    title.textContent = `node ${n.id} · ${n.action} · accuracy ${fmt(n.score)}`;
    s.appendChild(title);
    if (n.id !== 0) s.addEventListener("click", () => showNode(n.id));
    svg.appendChild(s);
  }
}

function drawCurve() {
  const svg = $("curve");
  svg.replaceChildren();
  const W = 420, H = 260, L = 40, B = 30;
  svg.appendChild(svgEl("line", { class: "axis", x1: L, y1: H - B, x2: W - 10, y2: H - B }));
  svg.appendChild(svgEl("line", { class: "axis", x1: L, y1: 10, x2: L, y2: H - B }));
  for (const v of [0, 0.5, 1]) {
    const t = svgEl("text", { x: 4, y: H - B - v * (H - B - 10) + 4 });
    t.textContent = v.toFixed(1);
    svg.appendChild(t);
  }
  const pts = current.curve;
  if (!pts.length) return;
  const n = Math.max(pts.length, 2);
  const x = (i) => L + ((i) * (W - L - 10)) / (n - 1 || 1);
  const y = (v) => H - B - v * (H - B - 10);
  svg.appendChild(svgEl("polyline", { fill: "none", stroke: "#2b6cb0", "stroke-width": 2, points: pts.map((p, i) => `${x(i)},${y(p.best)}`).join(" ") }));
  const label = svgEl("text", { x: W / 2 - 40, y: H - 6 });
  label.textContent = `expansions (${pts.length})`;
  svg.appendChild(label);
}

async function showNode(id) {
  current.selected = id;
  drawTree();
  const tree = await api(`/v1/runs/${current.id}/tree`);
  const node = (tree.nodes || []).find((n) => n.id === id);
  $("node-card").hidden = false;
  $("node-id").textContent = id;
  if (!node) { $("node-meta").textContent = "not yet written to the tree"; return; }
  $("node-meta").textContent = `action ${node.action} · accuracy ${fmt(node.score)} · held-out ${fmt(node.heldout)}` + (node.bug ? " · raised" : "");
  $("node-error").textContent = node.error || "";
  $("node-feedback").textContent = node.feedback ? (typeof node.feedback === "string" ? node.feedback : JSON.stringify(node.feedback, null, 1)) : "";
  $("node-program").textContent = node.program || node.state_code || "(no program)";
}

async function showFinal(id) {
  const run = await api(`/v1/runs/${id}`);
  const s = run.summary || {};
  $("final-meta").textContent = `accuracy ${fmt(s.accuracy)} · held-out ${fmt(s.heldout_accuracy)} · ${s.llm_calls ?? 0} paid calls · stop: ${s.stop ?? run.error ?? "–"}`;
  try { $("final-program").textContent = await api(`/v1/runs/${id}/program`); } catch { $("final-program").textContent = "(no program)"; }
}

api("/healthz").then((h) => { $("version").textContent = "v" + h.version; });
const poller = setInterval(refreshRuns, 3000);
refreshRuns();
