// The daemon logs: one viewer for the daemon chosen in its list (or with a peer row's Logs
// button), its last lines from GET /api/dashboard/logs/{backend}?lines=N, read again every 2 s
// while Follow is on. The log itself is not a live region (a following log would never stop
// talking); its status line says what is shown, once per change of what is shown.

import { $, absolute, api, apiPath, el, setText } from "./lib.js";

const FOLLOW_EVERY = 2000;

export class LogViewer {
  constructor() {
    this.select = $("log-daemon");
    this.count = $("log-count");
    this.follow = $("log-follow");
    this.output = $("log-output");
    this.state = $("log-state");
    this.read = $("log-read");
    this.timer = null;
    this.backends = [];
    $("log-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.load(true);
    });
    this.select.addEventListener("change", () => this.load(true));
    this.follow.addEventListener("change", () => this.following());
  }

  // The daemons of the status, in its order; the choice is kept while it exists.
  setBackends(clusters) {
    const names = clusters.flatMap((c) => c.peers.flatMap((p) =>
      [["ipfs", "Kubo (ipfs)"], ["cluster", "IPFS Cluster"]].map(([d, what]) =>
        [`${c.cluster}/${p.name}/${d}`, `${c.cluster} / ${p.name} / ${what}`])));
    const key = names.map((n) => n[0]).join("\n");
    if (key === this.backends.join("\n")) return;
    const chosen = this.select.value;
    this.backends = names.map((n) => n[0]);
    this.select.replaceChildren(el("option", { value: "" }, "Choose a daemon"),
      ...names.map(([value, text]) => el("option", { value, selected: value === chosen }, text)));
  }

  // A peer row's Logs button: that daemon, shown and focused.
  async show(backend) {
    if (![...this.select.options].some((o) => o.value === backend)) {
      this.select.append(el("option", { value: backend }, backend));
    }
    this.select.value = backend;
    await this.load(true);
    this.output.focus();
  }

  following() {
    clearInterval(this.timer);
    this.timer = null;
    if (this.follow.checked) {
      this.timer = setInterval(() => this.load(false), FOLLOW_EVERY);
      this.load(false);
    }
    this.announce();
  }

  announce(extra = "") {
    const backend = this.select.value;
    const text = !backend ? "Choose a daemon to see its last log lines."
      : `${this.follow.checked ? "Following" : "Showing"} the log of ${backend}${extra}.`;
    setText(this.state, text);
  }

  async load(changed) {
    const backend = this.select.value;
    if (!backend) {
      this.output.textContent = "";
      return this.announce();
    }
    const lines = Math.max(1, Math.min(2000, parseInt(this.count.value, 10) || 200));
    try {
      const view = await api(apiPath("/logs/", backend) + `?lines=${lines}`);
      if (this.select.value !== backend) return;
      const atEnd = this.output.scrollTop + this.output.clientHeight >= this.output.scrollHeight - 4;
      const text = view.lines.length ? view.lines.join("\n") : "(the log is empty)";
      if (this.output.textContent !== text) this.output.textContent = text;
      if (atEnd || changed || this.follow.checked) this.output.scrollTop = this.output.scrollHeight;
      setText(this.read, `${view.count} lines, read at ${absolute(new Date().toISOString())}.`);
      this.output.classList.remove("error");
      if (changed) this.announce(`: ${view.count} lines`);
    } catch (e) {
      const why = e.status === 404 ? `${backend} has no log yet (${e.reason})`
        : e.status === 501 ? "this dashboard has no access to daemon logs"
          : `the log of ${backend} could not be read: ${e.message}`;
      this.output.textContent = "";
      this.output.classList.add("error");
      setText(this.read, "");
      setText(this.state, why.charAt(0).toUpperCase() + why.slice(1) + ".");
    }
  }
}
