// What every part of the page uses: building elements (all data goes in as text, never as
// markup), calling the API with the token, and writing times and sizes for people.

export const API = "/api/dashboard";
export const SVG = "http://www.w3.org/2000/svg";
export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c);
  }
  return node;
}

// An SVG element; presentation attributes keep it legible without the style sheet.
export function svgEl(tag, attrs = {}) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

// A name usable in an id: `prod/web` -> `prod-web`.
export function slug(text) {
  return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
}

export function orDash(v) {
  return v === null || v === undefined ? "–" : String(v);
}

export function token() {
  const field = $("token");
  return field ? field.value.trim() : "";
}

export function authHeaders(extra) {
  const h = Object.assign({}, extra);
  if (token()) h.Authorization = "Bearer " + token();
  return h;
}

// A path under the API from name segments, each percent-encoded.
export function apiPath(prefix, name, suffix = "") {
  return API + prefix + name.split("/").map(encodeURIComponent).join("/") + suffix;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.reason = message;
  }
}

// Calls the API and unwraps its envelope; errors carry the HTTP status and the API's reason.
export async function api(path, options = {}) {
  let resp;
  const headers = authHeaders(Object.assign({ Accept: "application/json" }, options.headers));
  try {
    resp = await fetch(path, Object.assign({ cache: "no-store" }, options, { headers }));
  } catch (e) {
    throw new ApiError(0, "unreachable", "the dashboard did not answer (" + e.message + ")");
  }
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    body = null;
  }
  if (!resp.ok || !body || body.success !== true) {
    const err = (body && body.error) || { code: "http_error", message: resp.statusText || "no answer" };
    throw new ApiError(resp.status, err.code, err.message);
  }
  return body.data;
}

// "2026-11-30 10:12:03 UTC": the same for everyone, whatever their time zone.
export function absolute(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC").replace(/Z$/, " UTC");
}

// "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago".
export function relative(iso, now = Date.now()) {
  const t = new Date(iso).getTime();
  if (Number.isNaN(t)) return String(iso);
  const s = Math.round((now - t) / 1000);
  if (s < 0) return s > -5 ? "just now" : `in ${-s} s`;
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

// <time datetime="..." title="absolute">12 s ago</time>, kept current by refreshTimes().
export function timeEl(iso) {
  if (!iso) return document.createTextNode("never");
  const t = el("time", { datetime: iso, title: absolute(iso), "data-relative": "" }, relative(iso));
  return t;
}

export function refreshTimes(root = document) {
  const now = Date.now();
  for (const t of root.querySelectorAll("time[data-relative]")) {
    setText(t, relative(t.getAttribute("datetime"), now));
  }
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

export function formatBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return "–";
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  const text = i === 0 ? String(Math.round(v)) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2);
  return (n < 0 ? "-" : "") + text + " " + UNITS[i];
}

export function formatRate(n) {
  return n === null || n === undefined ? "–" : formatBytes(n) + "/s";
}

// Announces `text` in the page's assertive live region, with its kind (ok, error, pending).
export function say(text, kind) {
  const out = $("action-result");
  out.textContent = text;
  out.className = kind;
}
