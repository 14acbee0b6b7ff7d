// Line charts in inline SVG (no library): one line per series, a gap where a value is missing,
// the y axis from 0 to the largest value, the first and last time below. Each chart also has
// its figures as a table (in a <details>), for screen readers and for anyone who wants them.

import { absolute, el, setText, svgEl } from "./lib.js";

const W = 560;
const H = 170;
const LEFT = 70;
const RIGHT = 10;
const TOP = 10;
const BOTTOM = 22;
// Colours and dash patterns: series differ by more than their colour.
const COLORS = ["#0b62c4", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#0a7ea4", "#6e7781"];
const DASHES = ["", "6 3", "2 2", "8 3 2 3", "1 3", "10 4"];
const TABLE_ROWS = 30;

// A time on the x axis: hours and minutes, with seconds when the range is short.
function clock(ms, span) {
  return new Date(ms).toISOString().slice(11, span < 600000 ? 19 : 16) + " UTC";
}

export class Chart {
  // `format` writes a value with its unit; `max` fixes the top of the y axis (else the data's);
  // `guides` are dashed horizontal lines ({value, label}).
  constructor(id, title, { format, max = null, guides = [] }) {
    this.title = title;
    this.format = format;
    this.max = max;
    this.guides = guides;
    const captionId = id + "-caption";
    this.plot = el("div", { class: "plot" });
    this.legend = el("ul", { class: "legend" });
    this.note = el("p", { class: "chart-note" });
    this.tableHolder = el("div", { class: "scroll" });
    this.details = el("details", { class: "figures" },
      el("summary", {}, "Figures of " + title.toLowerCase()), this.tableHolder);
    this.figure = el("figure", { class: "chart", id, "aria-labelledby": captionId },
      el("figcaption", { id: captionId }, title), this.note, this.plot, this.legend, this.details);
  }

  // Nothing to draw: says why (no samples yet, or the history could not be read).
  empty(message, kind = "empty") {
    setText(this.note, message);
    this.note.className = "chart-note " + kind;
    this.plot.replaceChildren();
    this.legend.replaceChildren();
    this.tableHolder.replaceChildren();
    this.details.hidden = true;
  }

  // `times` in milliseconds, oldest first; `series` [{name, values}] with one value (or null) per
  // time.
  update(times, series) {
    const known = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
    if (!times.length || !known.length) {
      this.empty("No samples in this range yet.");
      return;
    }
    setText(this.note, "");
    this.note.className = "chart-note";
    this.details.hidden = false;
    const top = this.max ?? niceMax(Math.max(...known));
    this.plot.replaceChildren(this.svg(times, series, top));
    this.legend.replaceChildren(...series.map((s, i) => this.legendItem(s, i)));
    this.tableHolder.replaceChildren(this.table(times, series));
  }

  svg(times, series, top) {
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      class: "chart-svg" });
    const label = this.describe(times, series);
    svg.setAttribute("aria-label", label);
    const title = svgEl("title");
    title.textContent = label;
    svg.append(title);
    const t0 = times[0];
    const span = Math.max(times[times.length - 1] - t0, 1);
    const x = (t) => LEFT + (W - LEFT - RIGHT) * (times.length > 1 ? (t - t0) / span : 1);
    const y = (v) => TOP + (H - TOP - BOTTOM) * (1 - Math.max(0, Math.min(top, v)) / top);
    const text = (tx, ty, anchor, content) => {
      const t = svgEl("text", { x: tx, y: ty, "text-anchor": anchor, "font-size": 11,
        fill: "currentColor" });
      t.textContent = content;
      return t;
    };
    // Axes and labels.
    svg.append(svgEl("line", { x1: LEFT, x2: LEFT, y1: TOP, y2: H - BOTTOM, stroke: "currentColor",
      "stroke-opacity": 0.5 }));
    svg.append(svgEl("line", { x1: LEFT, x2: W - RIGHT, y1: H - BOTTOM, y2: H - BOTTOM,
      stroke: "currentColor", "stroke-opacity": 0.5 }));
    svg.append(text(LEFT - 4, TOP + 4, "end", this.format(top)));
    svg.append(text(LEFT - 4, H - BOTTOM, "end", this.format(0)));
    svg.append(text(LEFT, H - 6, "start", clock(t0, span)));
    svg.append(text(W - RIGHT, H - 6, "end", clock(times[times.length - 1], span)));
    for (const g of this.guides) {
      svg.append(svgEl("line", { x1: LEFT, x2: W - RIGHT, y1: y(g.value), y2: y(g.value),
        stroke: "currentColor", "stroke-opacity": 0.35, "stroke-dasharray": "3 3" }));
      svg.append(text(W - RIGHT, y(g.value) - 3, "end", g.label));
    }
    series.forEach((s, i) => this.line(svg, times, s.values, i, x, y));
    return svg;
  }

  // One series: polylines between gaps; a lone point is drawn as a dot.
  line(svg, times, values, i, x, y) {
    const stroke = COLORS[i % COLORS.length];
    let points = [];
    const flush = () => {
      if (points.length === 1) {
        const [px, py] = points[0].split(",");
        svg.append(svgEl("circle", { cx: px, cy: py, r: 2.5, fill: stroke, class: "series-" + i }));
      } else if (points.length > 1) {
        svg.append(svgEl("polyline", { points: points.join(" "), fill: "none", stroke,
          "stroke-width": 2, "stroke-dasharray": DASHES[i % DASHES.length] || "none",
          class: "series-" + i }));
      }
      points = [];
    };
    values.forEach((v, j) => {
      if (v === null || v === undefined) return flush();
      points.push(`${x(times[j]).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
  }

  legendItem(s, i) {
    const swatch = svgEl("svg", { width: 22, height: 10, "aria-hidden": "true" });
    swatch.append(svgEl("line", { x1: 1, x2: 21, y1: 5, y2: 5, stroke: COLORS[i % COLORS.length],
      "stroke-width": 3, "stroke-dasharray": DASHES[i % DASHES.length] || "none" }));
    return el("li", {}, swatch, ` ${s.name}: ${this.format(latest(s.values))} latest`);
  }

  // What the chart shows, in words: each series' latest value and its range.
  describe(times, series) {
    const parts = series.map((s) => {
      const known = s.values.filter((v) => v !== null && v !== undefined);
      if (!known.length) return `${s.name}: no values`;
      return `${s.name} ${this.format(latest(s.values))} latest, between ` +
        `${this.format(Math.min(...known))} and ${this.format(Math.max(...known))}`;
    });
    return `${this.title} from ${absolute(times[0])} to ${absolute(times[times.length - 1])} ` +
      `(${times.length} samples): ${parts.join("; ")}`;
  }

  // The latest samples as a table, newest first.
  table(times, series) {
    const head = el("tr", {}, el("th", { scope: "col" }, "Time"),
      ...series.map((s) => el("th", { scope: "col" }, s.name)));
    const rows = [];
    for (let j = times.length - 1; j >= 0 && rows.length < TABLE_ROWS; j--) {
      rows.push(el("tr", {}, el("th", { scope: "row" }, absolute(times[j])),
        ...series.map((s) => el("td", { class: "num" }, this.format(s.values[j])))));
    }
    const shown = Math.min(times.length, TABLE_ROWS);
    return el("table", {},
      el("caption", {}, `${this.title}: the latest ${shown} of ${times.length} samples`),
      el("thead", {}, head), el("tbody", {}, ...rows));
  }
}

function latest(values) {
  for (let j = values.length - 1; j >= 0; j--) {
    if (values[j] !== null && values[j] !== undefined) return values[j];
  }
  return null;
}

// A round top for the y axis: 1, 2 or 5 times a power of ten (or of 1024 for bytes, close
// enough for a scale).
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) {
    if (v <= m * p) return m * p;
  }
  return 10 * p;
}

// Aligns several histories on their sample times: the sorted times and, per history, a value
// (or null) for each of them.
export function align(histories, pick) {
  const set = new Set();
  for (const h of histories) for (const s of h.samples) set.add(Date.parse(s.time));
  const times = [...set].filter((t) => !Number.isNaN(t)).sort((a, b) => a - b);
  const index = new Map(times.map((t, i) => [t, i]));
  const columns = histories.map((h) => {
    const values = new Array(times.length).fill(null);
    for (const s of h.samples) {
      const i = index.get(Date.parse(s.time));
      const v = pick(s);
      if (i !== undefined && v !== null && v !== undefined) values[i] = v;
    }
    return values;
  });
  return { times, columns };
}

// The sum of several columns, null where none has a value.
export function sum(columns, length) {
  const out = new Array(length).fill(null);
  for (const c of columns) {
    c.forEach((v, i) => {
      if (v !== null) out[i] = (out[i] ?? 0) + v;
    });
  }
  return out;
}

// The peers' score sparkline for the peer table (unchanged from the first page): 120 x 30.
export function sparkline(peer, samples) {
  const w = 120, h = 30, pad = 2;
  const svg = svgEl("svg", { viewBox: `0 0 ${w} ${h}`, width: w, height: h, class: "spark" });
  const scores = samples.map((s) => s.score).filter((s) => s !== null && s !== undefined);
  const label = scores.length
    ? `Score history of ${peer}: ${scores.length} samples, lowest ${Math.min(...scores)}, ` +
      `latest ${scores[scores.length - 1]}`
    : `No score history for ${peer} yet`;
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const title = svgEl("title");
  title.textContent = label;
  svg.append(title);
  const y = (score) => pad + (h - 2 * pad) * (1 - Math.max(0, Math.min(100, score)) / 100);
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
