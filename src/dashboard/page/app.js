// The dashboard page: reads /api/dashboard/status (again on every event of the
// /api/dashboard/events stream) and draws a section per cluster (cluster.js: peers, health over
// time, pins, healing, alerts, configuration), the daemon logs (logs.js) and the overall health;
// restarts and configuration changes are sent with the token typed into the page.
// Plain JavaScript modules, no build step; all data goes into the page as text, never as markup.

import { ClusterSection } from "./cluster.js";
import { LogViewer } from "./logs.js";
import { $, API, api, apiPath, el, refreshTimes, say, setText, timeEl, token } from "./lib.js";

const TOKEN_KEY = "ipfs-kit-dashboard-token";
// Histories and IpfsPins are read again at most this often (statuses may come every second).
const DETAIL_EVERY = 5000;

const view = { clusters: new Map(), stream: null, busy: false, again: false, link: "connecting",
  detailsAt: 0 };
let logs = null;

function healthWord(score) {
  if (score === null || score === undefined) return "unknown";
  return score >= 80 ? "healthy" : score >= 50 ? "degraded" : "unhealthy";
}

// The status line (aria-live): connection and overall health, changed only when they change.
function showStatus(data) {
  if (data) view.last = data;
  let text;
  if (view.link === "token") {
    text = "This dashboard needs the token to show status: enter it below.";
  } else if (!view.last) {
    text = view.link === "down" ? "Cannot reach the dashboard; retrying." : "Loading status…";
  } else {
    const peers = view.last.clusters.flatMap((c) => c.peers);
    const healthy = peers.filter((p) => p.state === "Healthy").length;
    const score = view.last.overall.score;
    const link = view.link === "live" ? "Live." : "Reconnecting; showing the last status.";
    text = `${link} Overall health ${score ?? "unknown"} (${healthWord(score)}); ` +
      `${healthy} of ${peers.length} peers healthy.`;
  }
  setText($("status"), text);
  $("status").className = view.link === "live" ? "live" : "stale";
}

function renderOverall(data) {
  const overall = data.overall;
  const score = overall.score;
  const firing = (data.alerts || []).filter((a) => !a.entry && a.state === "firing").length;
  const meter = el("meter", { min: "0", max: "100", low: "50", high: "80", optimum: "100",
    value: String(score ?? 0), "aria-hidden": "true" });
  $("overall").replaceChildren(
    el("strong", {}, `${score ?? "unknown"}`), " of 100 ", meter,
    ` ${healthWord(score)}: ${overall.clusters} cluster${overall.clusters === 1 ? "" : "s"}, ` +
    `${overall.peers} peer${overall.peers === 1 ? "" : "s"}, ` +
    `${firing} alert${firing === 1 ? "" : "s"} firing`,
    ...(overall.updatedAt ? ["; last probe round ", timeEl(overall.updatedAt)] : []), ".");
}

// The header's links to each cluster and to the logs, in page order.
function renderNav() {
  const links = [...view.clusters.values()].map((c) =>
    el("li", {}, el("a", { href: "#" + c.id }, "Cluster " + c.key)));
  links.push(el("li", {}, el("a", { href: "#logs" }, "Daemon logs")));
  $("sections").replaceChildren(...links);
}

function render(data) {
  renderOverall(data);
  const seen = new Set();
  const list = $("clusters");
  data.clusters.forEach((c, i) => {
    seen.add(c.cluster);
    let section = view.clusters.get(c.cluster);
    if (!section) {
      section = new ClusterSection(c.cluster, { restart, showLogs: (b) => logs.show(b) });
      view.clusters.set(c.cluster, section);
    }
    if (list.children[i] !== section.node) list.insertBefore(section.node, list.children[i] || null);
    const alerts = (data.alerts || []).filter((a) => a.cluster === c.cluster);
    section.render(c, alerts);
  });
  for (const [key, section] of view.clusters) {
    if (!seen.has(key)) {
      section.node.remove();
      view.clusters.delete(key);
    }
  }
  $("no-clusters").hidden = data.clusters.length > 0;
  renderNav();
  logs.setBackends(data.clusters);
}

// Histories and IpfsPins of every cluster, at most every DETAIL_EVERY ms.
async function renderDetails(force) {
  if (!force && Date.now() - view.detailsAt < DETAIL_EVERY) return;
  view.detailsAt = Date.now();
  await Promise.all([...view.clusters.values()].flatMap((c) =>
    [c.loadHistory(c.lastPeers || []), c.loadPins()]));
}

// Reads the status (coalescing calls that arrive while one is running) and redraws.
async function refresh() {
  if (view.busy) {
    view.again = true;
    return;
  }
  view.busy = true;
  try {
    let first = !view.last;
    do {
      view.again = false;
      const data = await api(API + "/status");
      if (view.link === "token") view.link = "connecting";
      render(data);
      showStatus(data);
      await renderDetails(first);
      first = false;
    } while (view.again);
  } catch (e) {
    if (e.status === 401) view.link = "token";
    showStatus();
  } finally {
    view.busy = false;
  }
}

// Follows the Server-Sent Events stream with fetch (so the token can go in a header, which
// EventSource cannot send), reconnecting with backoff; every event triggers a refresh.
async function follow(ctrl) {
  let delay = 1000;
  while (!ctrl.signal.aborted) {
    try {
      const headers = { Accept: "text/event-stream" };
      if (token()) headers.Authorization = "Bearer " + token();
      const resp = await fetch(API + "/events", { cache: "no-store", signal: ctrl.signal, headers });
      if (resp.status === 401) {
        view.link = "token";
        showStatus();
        return; // waits for a token: "Use token" starts a new stream
      }
      if (!resp.ok || !resp.body) throw new Error("events: HTTP " + resp.status);
      view.link = "live";
      delay = 1000;
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf = (buf + value).replace(/\r\n?/g, "\n");
        let end;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (/^(event: ?status|data:)/m.test(block)) refresh();
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
    }
    view.link = "down";
    showStatus();
    await new Promise((ok) => setTimeout(ok, delay));
    delay = Math.min(delay * 2, 30000);
  }
}

function restartStream() {
  if (view.stream) view.stream.abort();
  view.stream = new AbortController();
  follow(view.stream);
}

async function restart(backend, button) {
  button.disabled = true;
  say(`Asking for a restart of ${backend}…`, "pending");
  try {
    const data = await api(apiPath("/backends/", backend, "/restart"), { method: "POST" });
    say(`Restart of ${backend} accepted as request ${data.requested.id}: ${data.message}.`, "ok");
  } catch (e) {
    const hint = e.status === 401 ? " Enter the dashboard token above and try again." : "";
    say(`Restart of ${backend} refused: ${e.message}.${hint}`, "error");
  } finally {
    button.disabled = false;
  }
}

function storeToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) {
    // Storage may be disabled: the token then lives in the field only.
  }
}

function start() {
  try {
    $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    $("token").value = "";
  }
  logs = new LogViewer();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    storeToken(token());
    say(token() ? "Token set for this tab." : "No token set.", "ok");
    restartStream();
    refresh();
  });
  $("forget").addEventListener("click", () => {
    $("token").value = "";
    storeToken("");
    say("Token forgotten.", "ok");
    restartStream();
  });
  setInterval(() => refreshTimes(), 5000);
  // Between status events too (a quiet cluster in Kubernetes may send none for minutes).
  setInterval(() => renderDetails(false), 15000);
  restartStream();
  refresh();
}

start();
