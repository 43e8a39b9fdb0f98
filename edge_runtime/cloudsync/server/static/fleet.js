// The fleet page: no framework, no build step. The API token lives in sessionStorage and goes
// out as the bearer token; every value from the API reaches the page as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { device: null, chart: null };
const SVGNS = "http://www.w3.org/2000/svg";

async function api(path) {
  const token = sessionStorage.getItem("edgeCloudToken") || "";
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (r.status === 401) { showLogin("The token was refused."); throw new Error("401"); }
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}

function showLogin(message) {
  sessionStorage.removeItem("edgeCloudToken");
  $("login").hidden = false; $("fleet").hidden = true; $("logout").hidden = true;
  $("login-error").textContent = message || "";
}

function cell(row, text, cls) {
  const td = row.insertCell(); td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function when(t) { return t ? new Date(t * 1000).toLocaleString() : "never"; }

function show(value) { return typeof value === "string" ? value : JSON.stringify(value); }

async function refreshDevices() {
  const devices = await api("/v1/devices");
  const body = $("devices").tBodies[0];
  body.replaceChildren();
  for (const d of devices) {
    const row = body.insertRow();
    row.className = "device" + (d.id === state.device ? " selected" : "");
    row.dataset.device = d.id;
    cell(row, d.id, "id");
    cell(row, d.connected ? "online" : "offline", d.connected ? "online" : "offline");
    cell(row, String(d.backlog), "backlog");
    cell(row, String(d.records), "records");
    cell(row, when(d.lastSeen), "seen");
    cell(row, d.version, "version");
    row.addEventListener("click", () => { state.device = d.id; state.chart = null; refresh(); });
  }
  $("status").textContent = devices.length + " device(s)";
}

async function refreshValues() {
  if (!state.device) { $("detail").hidden = true; return; }
  const dev = state.device;
  const values = await api("/v1/devices/" + encodeURIComponent(dev) + "/state");
  $("detail").hidden = false;
  $("detail-title").textContent = dev;
  const body = $("values").tBodies[0];
  body.replaceChildren();
  for (const v of values) {
    const row = body.insertRow();
    row.dataset.key = v.store + "/" + v.key;
    cell(row, v.store); cell(row, v.key); cell(row, show(v.value), "value");
    cell(row, when(v.updatedAt));
    const button = document.createElement("button");
    button.textContent = "chart"; button.className = "chart";
    button.addEventListener("click", () => { state.chart = [v.store, v.key]; refreshChart(); });
    row.insertCell().appendChild(button);
  }
}

function number(value) {
  if (typeof value === "number") return value;
  if (typeof value === "string" && value.trim() !== "" && !isNaN(Number(value))) {
    return Number(value);
  }
  if (typeof value === "boolean") return value ? 1 : 0;
  return null;
}

function svg(name, attrs) {
  const el = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

async function refreshChart() {
  const chart = $("chart");
  if (!state.device || !state.chart) { chart.replaceChildren(); $("chart-title").textContent = ""; return; }
  const [store, key] = state.chart;
  const path = "/v1/devices/" + encodeURIComponent(state.device) + "/history/" +
    encodeURIComponent(store) + "/" + key.split("/").map(encodeURIComponent).join("/");
  const data = await api(path + "?limit=500");
  const points = data.points.map((p) => [p.at, number(p.value)]).filter((p) => p[1] !== null);
  $("chart-title").textContent = store + "/" + key + ": " + points.length + " point(s)";
  chart.replaceChildren();
  if (!points.length) return;
  const W = 640, H = 220, pad = 36;
  const xs = points.map((p) => p[0]), ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => pad + (x1 === x0 ? (W - 2 * pad) / 2 : (x - x0) / (x1 - x0) * (W - 2 * pad));
  const sy = (y) => H - pad - (y1 === y0 ? (H - 2 * pad) / 2 : (y - y0) / (y1 - y0) * (H - 2 * pad));
  chart.appendChild(svg("polyline", {
    points: points.map((p) => sx(p[0]).toFixed(1) + "," + sy(p[1]).toFixed(1)).join(" ") }));
  for (const p of points) {
    const c = svg("circle", { class: "point", cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 3 });
    const tip = svg("title", {}); tip.textContent = when(p[0]) + ": " + p[1];
    c.appendChild(tip); chart.appendChild(c);
  }
  for (const [y, label] of [[pad - 6, String(y1)], [H - pad + 16, String(y0)]]) {
    const t = svg("text", { x: 2, y: y }); t.textContent = label; chart.appendChild(t);
  }
}

async function refresh() {
  try {
    await refreshDevices();
    await refreshValues();
    await refreshChart();
  } catch (err) {
    if (err.message !== "401") $("status").textContent = "error: " + err.message;
  }
}

function start() {
  $("login").hidden = true; $("fleet").hidden = false; $("logout").hidden = false;
  refresh();
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("edgeCloudToken", $("token").value);
  start();
});
$("logout").addEventListener("click", () => showLogin(""));
setInterval(() => { if (sessionStorage.getItem("edgeCloudToken")) refresh(); }, 2000);
if (sessionStorage.getItem("edgeCloudToken")) start(); else showLogin("");
