// One cluster's section of the page: its summary, the peer table (restart and log buttons per
// daemon), health over time, pins by state and its IpfsPins, the healing timeline, its alerts,
// and its configuration (config.js). Parts are updated in place, so that focus and open
// <details> survive the live updates.

import { Chart, align, sparkline, sum } from "./charts.js";
import { ConfigView } from "./config.js";
import { api, apiPath, el, formatBytes, formatRate, orDash, setText, slug, timeEl } from "./lib.js";

export const RANGES = [["15m", "15 minutes"], ["1h", "1 hour"], ["6h", "6 hours"], ["24h", "24 hours"]];
const RANGE_SECONDS = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400 };
// About this many points per chart: the history is asked for in steps of range / POINTS.
const POINTS = 180;

// What a healing step did, and what a step held back (result Skipped) would have done.
const ACTIONS = {
  SwarmConnect: ["reconnected it to the other peers", "would reconnect it to the other peers"],
  RestartPeer: ["restarted it", "would restart it"],
  Backoff: ["waited before restarting it again", "would wait before restarting it again"],
  GiveUp: ["stopped restarting it (restart budget spent)", "would stop restarting it"],
};

function section(id, title, ...content) {
  return el("section", { class: "part", "aria-labelledby": id },
    el("h3", { id }, title), ...content);
}

export class ClusterSection {
  // `hooks`: restart(backend, button), showLogs(backend, button).
  constructor(key, hooks) {
    this.key = key;
    this.hooks = hooks;
    this.id = "cluster-" + slug(key);
    this.rows = new Map();
    this.range = "1h";
    this.summary = el("p", { class: "summary" });
    this.alertsList = el("ul", { class: "alerts" });
    this.timeline = el("ol", { class: "timeline", reversed: true });
    this.pinCounts = el("div", { class: "scroll" });
    this.ipfsPins = el("div", { class: "ipfs-pins" });
    this.historyNote = el("p", { class: "history-note" });
    this.charts = {
      score: new Chart(this.id + "-score", "Health score", { format: (v) => v === null || v === undefined ? "–" : String(Math.round(v)),
        max: 100, guides: [{ value: 80, label: "healthy" }, { value: 50, label: "degraded" }] }),
      bandwidth: new Chart(this.id + "-bandwidth", "Kubo bandwidth, all peers", { format: formatRate }),
      repo: new Chart(this.id + "-repo", "Repository size per peer", { format: formatBytes }),
    };
    this.config = new ConfigView(key, this.id);
    this.node = el("section", { class: "cluster", id: this.id, "aria-labelledby": this.id + "-h" },
      el("h2", { id: this.id + "-h" }, "Cluster " + key),
      this.summary,
      section(this.id + "-peers", "Peers", this.peerTable()),
      section(this.id + "-health", "Health over time", this.rangeForm(), this.historyNote,
        el("div", { class: "charts" }, this.charts.score.figure, this.charts.bandwidth.figure,
          this.charts.repo.figure)),
      section(this.id + "-pins", "Pins", this.pinCounts, this.ipfsPins),
      section(this.id + "-healing", "Healing timeline", this.timeline),
      section(this.id + "-alerts", "Alerts", this.alertsList),
      this.config.node);
  }

  peerTable() {
    const head = el("tr", {}, ...["Peer", "State", "Score", "Score history", "Kubo (ipfs)",
      "IPFS Cluster", "Restarts", "Last probe", "Last error"].map((h) => el("th", { scope: "col" }, h)));
    this.tbody = el("tbody");
    return el("div", { class: "scroll" }, el("table", { class: "peers" },
      el("caption", {}, "Peers of " + this.key), el("thead", {}, head), this.tbody));
  }

  rangeForm() {
    const id = this.id + "-range";
    const select = el("select", { id },
      ...RANGES.map(([v, label]) => el("option", { value: v, selected: v === this.range }, label)));
    select.addEventListener("change", () => {
      this.range = select.value;
      this.lastHistory = 0;
      this.loadHistory(this.lastPeers || []);
    });
    return el("p", { class: "range" }, el("label", { for: id }, "Range "), select);
  }

  button(label, backend, kind, hook) {
    const b = el("button", { type: "button", class: kind, "data-backend": backend,
      "aria-label": label }, kind === "restart" ? "Restart" : "Logs");
    b.addEventListener("click", () => hook(backend, b));
    return b;
  }

  peerRow(peer) {
    const cells = {
      name: el("th", { scope: "row" }, peer),
      state: el("td"),
      score: el("td", { class: "num" }),
      history: el("td", { class: "history" }, "…"),
      ipfs: el("span"),
      cluster: el("span"),
      restarts: el("td", { class: "num" }),
      probe: el("td"),
      error: el("td", { class: "reason" }),
    };
    const base = `${this.key}/${peer}`;
    const daemon = (span, d, name) => el("td", { class: "daemon" }, span, " ",
      this.button(`Restart ${name} of ${peer}`, `${base}/${d}`, "restart", this.hooks.restart), " ",
      this.button(`Logs of ${name} of ${peer}`, `${base}/${d}`, "logs", this.hooks.showLogs));
    const row = el("tr", { "data-peer": peer }, cells.name, cells.state, cells.score, cells.history,
      daemon(cells.ipfs, "ipfs", "Kubo (ipfs)"), daemon(cells.cluster, "cluster", "IPFS Cluster"),
      cells.restarts, cells.probe, cells.error);
    return { row, cells };
  }

  // Everything that comes with a status: summary, peers, pins by state, healing, alerts.
  render(c, alerts) {
    setText(this.summary, `Phase ${c.phase ?? "unknown"}, score ${orDash(c.healthScore)}, ` +
      `${orDash(c.readyReplicas)} of ${c.replicas} peers ready` + (c.paused ? ", paused (the " +
      "operator only reports)" : "") + ".");
    const seen = new Set();
    const none = this.tbody.querySelector("tr.no-peers");
    if (none && c.peers.length) none.remove();
    c.peers.forEach((p, i) => {
      seen.add(p.name);
      let r = this.rows.get(p.name);
      if (!r) {
        r = this.peerRow(p.name);
        this.rows.set(p.name, r);
      }
      // The API's order; a row is moved only when out of place, so focus inside it stays.
      if (this.tbody.children[i] !== r.row) this.tbody.insertBefore(r.row, this.tbody.children[i] || null);
      this.renderPeer(r, p);
    });
    for (const [name, r] of this.rows) {
      if (!seen.has(name)) {
        r.row.remove();
        this.rows.delete(name);
      }
    }
    if (!c.peers.length && !none) {
      this.tbody.replaceChildren(el("tr", { class: "no-peers" }, el("td", { colspan: "9" },
        "No peers yet: the operator has not started any (see the phase above).")));
    }
    this.renderPinCounts(c.peers);
    this.renderHealing(alerts.filter((a) => a.entry));
    this.renderAlerts(alerts.filter((a) => !a.entry));
    this.config.statusGeneration(c);
    this.lastPeers = c.peers.map((p) => p.name);
  }

  renderPeer(r, p) {
    setText(r.cells.state, p.state);
    r.cells.state.className = "state " + String(p.state).toLowerCase();
    setText(r.cells.score, orDash(p.score));
    setText(r.cells.ipfs, [p.kuboVersion ? "v" + p.kuboVersion : "version unknown",
      orDash(p.swarmPeers) + " swarm peers"].join(", "));
    setText(r.cells.cluster, [p.clusterVersion ? "v" + p.clusterVersion : "version unknown",
      "sees " + orDash(p.clusterPeersSeen) + " peers", orDash(p.pinsError ?? 0) + " pin errors"].join(", "));
    setText(r.cells.restarts, String(p.restarts ?? 0));
    const probe = r.cells.probe.querySelector("time");
    if (!probe || probe.getAttribute("datetime") !== p.lastProbe) r.cells.probe.replaceChildren(timeEl(p.lastProbe));
    setText(r.cells.error, p.lastError || "none");
    r.cells.error.className = p.lastError ? "reason error" : "reason";
  }

  renderPinCounts(peers) {
    const states = [["pinsPinned", "Pinned"], ["pinsQueued", "Queued"], ["pinsPinning", "Pinning"],
      ["pinsError", "Error"]];
    if (!peers.length || peers.every((p) => states.every(([k]) => p[k] === null || p[k] === undefined))) {
      this.pinCounts.replaceChildren(el("p", { class: "empty" },
        "No pin counts yet: IPFS Cluster has not answered a probe."));
      return;
    }
    const total = (k) => peers.reduce((n, p) => n + (p[k] ?? 0), 0);
    const head = el("tr", {}, el("th", { scope: "col" }, "Peer"),
      ...states.map(([, h]) => el("th", { scope: "col" }, h)));
    const rows = peers.map((p) => el("tr", {}, el("th", { scope: "row" }, p.name),
      ...states.map(([k]) => el("td", { class: "num" + (k === "pinsError" && p[k] ? " error" : "") }, orDash(p[k])))));
    const foot = el("tr", {}, el("th", { scope: "row" }, "All peers"),
      ...states.map(([k]) => el("td", { class: "num" }, String(total(k)))));
    this.pinCounts.replaceChildren(el("table", { class: "pin-counts" },
      el("caption", {}, "Pins by state on each peer (IPFS Cluster's own count)"),
      el("thead", {}, head), el("tbody", {}, ...rows), el("tfoot", {}, foot)));
  }

  // The IpfsPins with their state on each peer (GET /clusters/{key}/pins).
  async loadPins() {
    let view;
    try {
      view = await api(apiPath("/clusters/", this.key, "/pins"));
    } catch (e) {
      this.ipfsPins.replaceChildren(el("p", { class: "error" }, "IpfsPins unavailable: " + e.message));
      return;
    }
    if (!view.ipfsPins) {
      this.ipfsPins.replaceChildren(el("p", { class: "empty" }, "IpfsPin objects exist only in " +
        "Kubernetes. Pins made through IPFS Cluster's API are counted above."));
      return;
    }
    if (!view.pins.length) {
      this.ipfsPins.replaceChildren(el("p", { class: "empty" }, `No IpfsPins name ${this.key}.`));
      return;
    }
    const head = el("tr", {}, ...["IpfsPin", "CID", "Phase", "Pinned", "On each peer"]
      .map((h) => el("th", { scope: "col" }, h)));
    const rows = view.pins.map((p) => el("tr", { "data-pin": p.name },
      el("th", { scope: "row" }, p.name), el("td", { class: "cid" }, p.cid),
      el("td", { class: "state " + String(p.phase ?? "").toLowerCase() }, orDash(p.phase)),
      el("td", { class: "num" }, p.pinned === null || p.pinned === undefined ? "–" : `${p.pinned} of ${p.allocated ?? "?"}`),
      el("td", {}, p.peers.length ? el("ul", { class: "pin-peers" }, ...p.peers.map((s) =>
        el("li", { class: "pin-state " + String(s.state).toLowerCase() },
          `${s.peer}: ${s.state}` + (s.error ? ` (${s.error})` : "")))) : "not reported yet")));
    this.ipfsPins.replaceChildren(el("div", { class: "scroll" }, el("table", { class: "ipfs-pins" },
      el("caption", {}, "IpfsPins of " + this.key + " and their state on each peer"),
      el("thead", {}, head), el("tbody", {}, ...rows))));
  }

  renderHealing(steps) {
    if (!steps.length) {
      this.timeline.replaceChildren(el("li", { class: "empty" },
        "No healing steps yet: nothing has needed fixing."));
      return;
    }
    const items = steps.slice().reverse().map((a) => {
      const e = a.entry;
      const result = String(e.result);
      const words = (ACTIONS[e.action] || [e.action, e.action])[result === "Skipped" ? 1 : 0];
      return el("li", { class: "step " + result.toLowerCase(), "data-action": e.action },
        timeEl(e.time), " ", el("strong", {}, e.peer), `: ${words} (${e.action}) `,
        el("span", { class: "why" }, "because " + e.reason), "; result: ",
        el("span", { class: "result " + result.toLowerCase() }, result));
    });
    this.timeline.replaceChildren(...items);
  }

  renderAlerts(alerts) {
    if (!alerts.length) {
      this.alertsList.replaceChildren(el("li", { class: "empty" }, "No alerts."));
      return;
    }
    this.alertsList.replaceChildren(...alerts.slice().reverse().map((a) =>
      el("li", { class: `alert ${a.severity} ${a.state}` }, timeEl(a.timestamp), " ",
        el("strong", {}, a.type), ` (${a.severity}, ${a.state})` + (a.peer ? ` on ${a.peer}` : "") +
        `: ${a.message}`)));
  }

  // Health over time from the history route: the cluster's score, and per peer its bandwidth
  // and repository size (all in steps of range / POINTS, so the samples line up).
  async loadHistory(peers) {
    const seconds = RANGE_SECONDS[this.range];
    const step = Math.max(1, Math.round(seconds / POINTS));
    const query = `?since=${this.range}&step=${step}s`;
    const get = (name) => api(apiPath("/history/", name, query));
    let cluster;
    try {
      cluster = await get(this.key);
    } catch (e) {
      const why = e.status === 404
        ? "No samples yet: the first is taken one probe interval after the cluster is reconciled."
        : "History unavailable: " + e.message;
      for (const c of Object.values(this.charts)) c.empty(why, e.status === 404 ? "empty" : "error");
      setText(this.historyNote, "");
      return;
    }
    const peerHistories = await Promise.all(peers.map((p) =>
      get(`${this.key}/${p}`).catch(() => ({ name: p, samples: [] }))));
    setText(this.historyNote, (cluster.warning ? cluster.warning + " " : "") +
      (cluster.source === "prometheus" ? "From Prometheus. " : "") +
      `One point per ${cluster.stepSeconds ?? step} s.`);
    const score = align([cluster], (s) => s.score);
    this.charts.score.update(score.times, [{ name: "Cluster score", values: score.columns[0] }]);
    const bw = align(peerHistories, (s) => s.bytesInPerSecond);
    const out = align(peerHistories, (s) => s.bytesOutPerSecond);
    this.charts.bandwidth.update(bw.times, [
      { name: "In", values: sum(bw.columns, bw.times.length) },
      { name: "Out", values: sum(out.columns, out.times.length) }]);
    const repo = align(peerHistories, (s) => s.repoSize);
    this.charts.repo.update(repo.times, peers.map((p, i) => ({ name: p, values: repo.columns[i] })));
    peerHistories.forEach((h, i) => {
      const r = this.rows.get(peers[i]);
      if (r) r.cells.history.replaceChildren(sparkline(peers[i], h.samples));
    });
  }
}
