// vrlab ui: draws the lab as plain SVG, follows /api/events (server-sent events) for node
// states and link rates, and drives traces, captures and node details through /api/.
"use strict";
const SVG = "http://www.w3.org/2000/svg";
const W = 1000, H = 560;
let lab = null;
const pos = {};

function el(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function html(tag, text, parent) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (parent) parent.appendChild(e);
  return e;
}
function rate(v, unit) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + " M" + unit;
  if (v >= 1e3) return (v / 1e3).toFixed(1) + " k" + unit;
  return v.toFixed(v < 10 ? 1 : 0) + " " + unit;
}
async function api(path, options) {
  const response = await fetch(path, Object.assign({credentials: "same-origin"}, options || {}));
  const data = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function draw() {
  const svg = document.getElementById("graph");
  svg.innerHTML = "";
  for (const n of lab.nodes) pos[n.name] = [60 + n.x * (W - 120), 50 + n.y * (H - 100)];
  const links = el("g", {id: "links"}, svg);
  for (const link of lab.links) {
    const g = el("g", {class: "link", "data-link": link.index, "data-packets": "0"}, links);
    const ends = link.ends.map(e => e.split(":"));
    let mid;
    if (ends.length === 2) {
      const [a, b] = ends.map(([n]) => pos[n]);
      el("line", {x1: a[0], y1: a[1], x2: b[0], y2: b[1]}, g);
      mid = [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2];
      ends.forEach(([n, ifname], i) => {
        const p = pos[n], q = i === 0 ? b : a;
        const t = el("text", {class: "ifname", x: p[0] + (q[0] - p[0]) * 0.22,
                              y: p[1] + (q[1] - p[1]) * 0.22 - 6, "text-anchor": "middle"}, g);
        t.textContent = ifname;
      });
    } else {
      const xs = ends.map(([n]) => pos[n][0]), ys = ends.map(([n]) => pos[n][1]);
      mid = [xs.reduce((s, v) => s + v) / xs.length, ys.reduce((s, v) => s + v) / ys.length + 30];
      for (const [n, ifname] of ends) {
        const p = pos[n];
        el("line", {x1: p[0], y1: p[1], x2: mid[0], y2: mid[1]}, g);
        const t = el("text", {class: "ifname", x: p[0] + (mid[0] - p[0]) * 0.3,
                              y: p[1] + (mid[1] - p[1]) * 0.3 - 6, "text-anchor": "middle"}, g);
        t.textContent = ifname;
      }
      el("circle", {class: "lan-dot", cx: mid[0], cy: mid[1], r: 9}, g);
    }
    const label = el("text", {class: "rate", x: mid[0], y: mid[1] + 18, "text-anchor": "middle"}, g);
    label.textContent = link.name;
  }
  const nodes = el("g", {id: "nodes"}, svg);
  for (const n of lab.nodes) {
    const [x, y] = pos[n.name];
    const g = el("g", {class: "node " + n.role, "data-node": n.name, "data-state": n.state}, nodes);
    if (n.role === "router") el("rect", {x: x - 42, y: y - 22, width: 84, height: 44, rx: 8}, g);
    else el("ellipse", {cx: x, cy: y, rx: 42, ry: 22}, g);
    const t = el("text", {x: x, y: y + 1, "text-anchor": "middle"}, g);
    t.textContent = n.name;
    el("circle", {class: "state-dot " + stateClass(n.state), cx: x - 30, cy: y - 10, r: 5}, g);
    const s = el("text", {class: "state", x: x, y: y + 15, "text-anchor": "middle"}, g);
    s.textContent = n.state;
    g.addEventListener("click", () => showNode(n.name));
  }
}
function stateClass(state) { return state === "running" || state === "stopped" ? state : "other"; }

function fillForms() {
  const from = document.getElementById("trace-from"), to = document.getElementById("trace-to");
  const cap = document.getElementById("capture-if");
  for (const n of lab.nodes) {
    if (n.role === "host") html("option", n.name, from).value = n.name;
    html("option", n.name, to).value = n.name;
    for (const i of n.interfaces) html("option", n.name + ":" + i.name, cap).value = n.name + ":" + i.name;
  }
  const hosts = lab.nodes.filter(n => n.role === "host");
  if (hosts.length > 1) to.value = hosts[hosts.length - 1].name;
}

function follow() {
  const source = new EventSource("/api/events");
  source.onmessage = (event) => {
    const data = JSON.parse(event.data);
    document.getElementById("status").textContent =
      "live " + new Date(data.time * 1000).toLocaleTimeString();
    for (const [name, state] of Object.entries(data.states)) {
      const g = document.querySelector(`[data-node="${CSS.escape(name)}"]`);
      if (!g) continue;
      g.setAttribute("data-state", state);
      g.querySelector(".state").textContent = state;
      g.querySelector(".state-dot").setAttribute("class", "state-dot " + stateClass(state));
    }
    for (const [index, c] of Object.entries(data.links)) {
      const g = document.querySelector(`[data-link="${index}"]`);
      if (!g) continue;
      g.setAttribute("data-packets", c.packets);
      g.setAttribute("data-bytes", c.bytes);
      g.classList.toggle("busy", c.pps > 0);
      const link = lab.links.find(l => String(l.index) === index);
      g.querySelector(".rate").textContent =
        `${link.name}: ${rate(c.pps, "pkt/s")}, ${rate(c.bps * 8, "bit/s")} (${c.packets} pkts)`;
    }
  };
  source.onerror = () => { document.getElementById("status").textContent = "disconnected, retrying…"; };
}

function table(rows, parent) {
  if (!Array.isArray(rows) || !rows.length || typeof rows[0] !== "object") {
    html("pre", JSON.stringify(rows, null, 1), parent);
    return;
  }
  const keys = Object.keys(rows[0]).filter(k => typeof rows[0][k] !== "object" || rows[0][k] === null);
  const t = html("table", undefined, parent);
  const head = html("tr", undefined, t);
  for (const k of keys) html("th", k, head);
  for (const r of rows) {
    const tr = html("tr", undefined, t);
    for (const k of keys) html("td", r[k] === null || r[k] === undefined ? "" : String(r[k]), tr);
  }
}

async function showNode(name) {
  document.querySelectorAll(".node.selected").forEach(g => g.classList.remove("selected"));
  document.querySelector(`[data-node="${CSS.escape(name)}"]`).classList.add("selected");
  document.getElementById("node-title").textContent = name;
  const box = document.getElementById("node-detail");
  box.textContent = "loading…";
  try {
    const d = await api("/api/node/" + encodeURIComponent(name));
    box.innerHTML = "";
    for (const [key, value] of Object.entries(d)) {
      if (key === "name" || key === "role") continue;
      html("h4", key, box);
      if (value && !Array.isArray(value) && typeof value === "object" && !value.error) {
        table(Object.entries(value).map(([k, v]) => ({name: k, value: v})), box);
      } else table(value, box);
    }
    box.setAttribute("data-loaded", name);
  } catch (e) { box.innerHTML = ""; html("p", String(e), box).className = "error"; }
}

function light(journey) {
  document.querySelectorAll(".lit, .failed").forEach(g => g.classList.remove("lit", "failed"));
  for (const hop of journey.hops) {
    if (hop.kind === "wire" && hop.link !== null) {
      const g = document.querySelector(`[data-link="${hop.link}"]`);
      if (g) g.classList.add("lit");
    } else if (hop.kind !== "wire") {
      const g = document.querySelector(`[data-node="${CSS.escape(hop.node)}"]`);
      if (!g) continue;
      g.classList.add(hop.verdict === "dropped" || hop.verdict === "icmp-error" ? "failed" : "lit");
    }
  }
}

async function runTrace(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {from: form.get("from"), to: form.get("addr") || form.get("to"),
                family: form.get("family"), proto: form.get("proto"), ttl: form.get("ttl"),
                size: form.get("size"), df: form.get("df") === "on"};
  const out = document.getElementById("trace-result");
  out.textContent = "tracing…";
  out.removeAttribute("data-outcome");
  document.getElementById("trace-run").disabled = true;
  try {
    const r = await api("/api/trace", {method: "POST", body: JSON.stringify(body),
                                       headers: {"Content-Type": "application/json"}});
    out.innerHTML = "";
    html("p", r.journey.explanation, out);
    html("pre", r.text, out);
    const picture = html("div", undefined, out);
    picture.innerHTML = r.svg;
    light(r.journey);
    out.setAttribute("data-outcome", r.journey.outcome);
  } catch (e) {
    out.innerHTML = ""; html("p", String(e), out).className = "error";
    out.setAttribute("data-outcome", "failed");
  } finally { document.getElementById("trace-run").disabled = false; }
}

let capture = null;
async function startCapture(event) {
  event.preventDefault();
  const [node, ifname] = document.getElementById("capture-if").value.split(":");
  const out = document.getElementById("capture-result");
  try {
    capture = await api("/api/capture", {method: "POST", body: JSON.stringify({node, ifname}),
                                         headers: {"Content-Type": "application/json"}});
    out.textContent = `capturing ${node}:${ifname}…`;
    document.getElementById("capture-stop").disabled = false;
    document.getElementById("capture-start").disabled = true;
  } catch (e) { out.textContent = String(e); }
}
async function stopCapture() {
  const out = document.getElementById("capture-result");
  try {
    const r = await api(`/api/capture/${capture.id}/stop`, {method: "POST"});
    out.innerHTML = "";
    const a = html("a", `download ${capture.node}-${capture.ifname}.pcap (${r.packets} packets)`, out);
    a.href = r.download;
    a.id = "capture-download";
  } catch (e) { out.textContent = String(e); }
  document.getElementById("capture-stop").disabled = true;
  document.getElementById("capture-start").disabled = false;
}

async function main() {
  try {
    lab = await api("/api/lab");
  } catch (e) {
    document.getElementById("status").textContent = "cannot load the lab: " + e;
    return;
  }
  document.getElementById("lab-name").textContent = lab.lab;
  document.title = "vrlab " + lab.lab;
  draw();
  fillForms();
  follow();
  document.getElementById("trace-form").addEventListener("submit", runTrace);
  document.getElementById("capture-form").addEventListener("submit", startCapture);
  document.getElementById("capture-stop").addEventListener("click", stopCapture);
  document.body.setAttribute("data-ready", "1");
}
main();
