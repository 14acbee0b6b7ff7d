// The dashboard page: reads /api/dashboard/status (again on every event of the
// /api/dashboard/events stream), draws a peer table per cluster with a score sparkline from
// /api/dashboard/history/{cluster}/{peer}, and sends restarts with the token typed into the page.
// Plain JavaScript, no build step; all data goes into the page as text, never as markup.
"use strict";

(() => {
  const API = "/api/dashboard";
  const TOKEN_KEY = "ipfs-kit-dashboard-token";
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  const view = { clusters: new Map(), stream: null, busy: false, again: false, link: "connecting" };

  // An SVG element; presentation attributes keep it legible without the style sheet.
  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
    return node;
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const c of children) node.append(c);
    return node;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function token() {
    return $("token").value.trim();
  }

  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    if (token()) h.Authorization = "Bearer " + token();
    return h;
  }

  // A path under the API from name segments, each percent-encoded.
  function apiPath(prefix, name, suffix = "") {
    return API + prefix + name.split("/").map(encodeURIComponent).join("/") + suffix;
  }

  class ApiError extends Error {
    constructor(status, code, message) {
      super(`${status} ${code}: ${message}`);
      this.status = status;
    }
  }

  // Calls the API and unwraps its envelope; errors carry the HTTP status and the API's reason.
  async function api(path, options = {}) {
    let resp;
    try {
      resp = await fetch(path, Object.assign({ cache: "no-store" }, options, {
        headers: authHeaders({ Accept: "application/json" }),
      }));
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

  function renderOverall(overall) {
    const p = $("overall");
    const score = overall.score;
    const meter = el("meter", { min: "0", max: "100", low: "50", high: "80", optimum: "100",
      value: String(score ?? 0), "aria-hidden": "true" });
    p.replaceChildren(
      el("strong", {}, `${score ?? "unknown"}`), " of 100 ", meter,
      ` ${healthWord(score)}: ${overall.clusters} cluster${overall.clusters === 1 ? "" : "s"}, ` +
      `${overall.peers} peer${overall.peers === 1 ? "" : "s"}` +
      (overall.updatedAt ? `; last probe round ${overall.updatedAt}` : ""));
  }

  function clusterView(key) {
    let c = view.clusters.get(key);
    if (c) return c;
    const heading = el("h2", {}, "Cluster " + key);
    const summary = el("p");
    const head = el("tr", {},
      ...["Peer", "State", "Score", "Score history", "Kubo (ipfs)", "IPFS Cluster", "Restarts",
        "Last error"].map((h) => el("th", { scope: "col" }, h)));
    const tbody = el("tbody");
    const table = el("table", {}, el("caption", {}, "Peers of " + key), el("thead", {}, head), tbody);
    const section = el("section", { class: "cluster" }, heading, summary, el("div", { class: "scroll" }, table));
    $("clusters").append(section);
    c = { section, summary, tbody, rows: new Map() };
    view.clusters.set(key, c);
    return c;
  }

  function restartButton(backend, label) {
    const b = el("button", { type: "button", class: "restart", "data-backend": backend,
      "aria-label": label }, "Restart");
    b.addEventListener("click", () => restart(backend, b));
    return b;
  }

  function peerRow(cluster, peer) {
    const cells = {
      name: el("th", { scope: "row" }, peer),
      state: el("td"),
      score: el("td", { class: "num" }),
      history: el("td", { class: "history" }, "…"),
      ipfs: el("span"),
      cluster: el("span"),
      restarts: el("td", { class: "num" }),
      error: el("td", { class: "reason" }),
    };
    const base = `${cluster}/${peer}`;
    const row = el("tr", { "data-peer": peer }, cells.name, cells.state, cells.score, cells.history,
      el("td", { class: "daemon" }, cells.ipfs, " ",
        restartButton(base + "/ipfs", `Restart Kubo (ipfs) of ${peer}`)),
      el("td", { class: "daemon" }, cells.cluster, " ",
        restartButton(base + "/cluster", `Restart IPFS Cluster of ${peer}`)),
      cells.restarts, cells.error);
    return { row, cells };
  }

  function orDash(v) {
    return v === null || v === undefined ? "–" : String(v);
  }

  function render(data) {
    renderOverall(data.overall);
    const seen = new Set();
    for (const c of data.clusters) {
      seen.add(c.cluster);
      const cv = clusterView(c.cluster);
      setText(cv.summary, `Phase ${c.phase ?? "unknown"}, score ${orDash(c.healthScore)}, ` +
        `${orDash(c.readyReplicas)} of ${c.replicas} peers ready` + (c.paused ? ", paused" : "") + ".");
      const peers = new Set();
      c.peers.forEach((p, i) => {
        peers.add(p.name);
        let r = cv.rows.get(p.name);
        if (!r) {
          r = peerRow(c.cluster, p.name);
          cv.rows.set(p.name, r);
        }
        // The API's order; a row is moved only when out of place, so focus inside it stays.
        if (cv.tbody.children[i] !== r.row) cv.tbody.insertBefore(r.row, cv.tbody.children[i] || null);
        setText(r.cells.state, p.state);
        r.cells.state.className = "state " + String(p.state).toLowerCase();
        setText(r.cells.score, orDash(p.score));
        setText(r.cells.ipfs, [p.kuboVersion ? "v" + p.kuboVersion : "version unknown",
          orDash(p.swarmPeers) + " swarm peers"].join(", "));
        setText(r.cells.cluster, [p.clusterVersion ? "v" + p.clusterVersion : "version unknown",
          "sees " + orDash(p.clusterPeersSeen) + " peers",
          orDash(p.pinsError ?? 0) + " pin errors"].join(", "));
        setText(r.cells.restarts, String(p.restarts ?? 0));
        setText(r.cells.error, p.lastError || "none");
      });
      for (const [name, r] of cv.rows) {
        if (!peers.has(name)) {
          r.row.remove();
          cv.rows.delete(name);
        }
      }
    }
    for (const [key, cv] of view.clusters) {
      if (!seen.has(key)) {
        cv.section.remove();
        view.clusters.delete(key);
      }
    }
    renderAlerts(data.alerts || []);
  }

  function renderAlerts(alerts) {
    const items = alerts.slice(-10).reverse().map((a) => {
      const e = a.entry;
      if (e) {
        return el("li", {}, `${e.time} ${a.cluster}/${e.peer}: ${e.action} (${e.result}): ${e.reason}`);
      }
      const where = a.peer ? `${a.cluster}/${a.peer}` : a.cluster;
      return el("li", { class: `alert ${a.severity} ${a.state}` },
        `${a.timestamp} ${where}: ${a.type} ${a.state} (${a.severity}): ${a.message}`);
    });
    $("alerts").replaceChildren(...(items.length ? items : [el("li", {}, "None.")]));
  }

  // An inline SVG line of the peer's score over the samples, gaps where no score was known.
  function sparkline(peer, samples) {
    const w = 120, h = 30, pad = 2;
    const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "spark" });
    const scores = samples.map((s) => s.score).filter((s) => s !== null && s !== undefined);
    const label = scores.length
      ? `Score history of ${peer}: ${scores.length} samples, lowest ${Math.min(...scores)}, ` +
        `latest ${scores[scores.length - 1]}`
      : `No score history for ${peer} yet`;
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", label);
    const title = svgEl("title", {});
    title.textContent = label;
    svg.append(title);
    const y = (score) => pad + (h - 2 * pad) * (1 - Math.max(0, Math.min(100, score)) / 100);
    // The "healthy" threshold, 80.
    svg.append(svgEl("line", { x1: 0, x2: w, y1: y(80), y2: y(80), stroke: "currentColor",
      "stroke-opacity": 0.35, "stroke-dasharray": "2 2" }));
    const step = samples.length > 1 ? (w - 2 * pad) / (samples.length - 1) : 0;
    let line = [];
    let last = null;
    const flush = () => {
      if (!line.length) return;
      svg.append(svgEl("polyline", { points: line.join(" "), fill: "none", stroke: "currentColor",
        "stroke-width": 1.5 }));
      line = [];
    };
    samples.forEach((s, i) => {
      if (s.score === null || s.score === undefined) return flush();
      last = [pad + i * step, y(s.score)];
      line.push(`${last[0].toFixed(1)},${last[1].toFixed(1)}`);
    });
    flush();
    if (last) {
      svg.append(svgEl("circle", { cx: last[0].toFixed(1), cy: last[1].toFixed(1), r: 2,
        fill: "currentColor" }));
    }
    return svg;
  }

  async function renderHistories(data) {
    const jobs = [];
    for (const c of data.clusters) {
      const cv = view.clusters.get(c.cluster);
      for (const p of c.peers) {
        const r = cv && cv.rows.get(p.name);
        if (!r) continue;
        jobs.push(api(apiPath("/history/", `${c.cluster}/${p.name}`))
          .then((h) => r.cells.history.replaceChildren(sparkline(p.name, h.samples)))
          .catch((e) => setText(r.cells.history, e.status === 404 ? "no history yet" : "unavailable")));
      }
    }
    await Promise.all(jobs);
  }

  // Reads the status (coalescing calls that arrive while one is running) and redraws.
  async function refresh() {
    if (view.busy) {
      view.again = true;
      return;
    }
    view.busy = true;
    try {
      do {
        view.again = false;
        const data = await api(API + "/status");
        if (view.link === "token") view.link = "connecting";
        render(data);
        showStatus(data);
        await renderHistories(data);
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
        const resp = await fetch(API + "/events", {
          cache: "no-store", signal: ctrl.signal, headers: authHeaders({ Accept: "text/event-stream" }),
        });
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

  function say(text, kind) {
    const out = $("action-result");
    out.textContent = text;
    out.className = kind;
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
    restartStream();
    refresh();
  }

  start();
})();
