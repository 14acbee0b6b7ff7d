// A cluster's configuration: the whole spec, read-only, and a form for the fields the dashboard
// may change (GET / PATCH /api/dashboard/clusters/{cluster}/spec). A change is sent as a JSON
// merge patch of the changed fields only, with the token and the generation it was made on
// (If-Match), and the API's answer is shown; a refusal names the field, which is marked and
// focused.

import { api, apiPath, el, setText } from "./lib.js";

const GROUPS = [
  ["Peers", (f) => !f.startsWith("spec.health.")],
  ["Health and healing", (f) => f.startsWith("spec.health.")],
];

// "spec.health.probeInterval" -> "Probe interval".
function label(field) {
  const last = field.split(".").pop();
  const words = last.replace(/([A-Z])/g, " $1").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

// The patch of `field` = `value`, nested as the spec is: {"health": {"autoHeal": false}}.
function put(patch, field, value) {
  const keys = field.split(".").slice(1);
  let at = patch;
  keys.slice(0, -1).forEach((k) => { at = at[k] = at[k] || {}; });
  at[keys[keys.length - 1]] = value;
}

export class ConfigView {
  constructor(key, id) {
    this.key = key;
    this.id = id + "-config";
    this.view = null;
    this.inputs = new Map();
    this.fields = el("div", { class: "config-fields" }, el("p", {}, "Loading the spec…"));
    this.result = el("p", { class: "config-result", role: "status", "aria-live": "polite" });
    this.rollout = el("p", { class: "rollout" });
    this.specText = el("pre", { class: "spec", tabindex: "0", "aria-label": `Whole spec of ${key} (read-only)` });
    this.specHeading = el("h4", { id: this.id + "-spec" }, "Whole spec");
    this.appliedBy = el("p", { class: "help" });
    const save = el("button", { type: "submit" }, "Save changes");
    const reload = el("button", { type: "button" }, "Reload");
    reload.addEventListener("click", () => this.load("Reloaded."));
    this.form = el("form", { class: "config-form", "aria-labelledby": this.id + "-h", novalidate: true },
      this.fields, el("p", { class: "buttons" }, save, " ", reload), this.result);
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.save();
    });
    this.node = el("details", { class: "config", id: this.id },
      el("summary", { id: this.id + "-h" }, "Configuration of " + key),
      el("p", { class: "help" }, "The whole spec is below. The fields of the form only change " +
        "how the operator looks after the peers and can be changed here with the dashboard " +
        "token; every other field is read-only here: change it in the cluster's manifest " +
        "(kubectl apply in Kubernetes, local up -f locally)."),
      this.form, this.rollout, this.specHeading, this.appliedBy, this.specText);
    this.node.addEventListener("toggle", () => {
      if (this.node.open && !this.view) this.load();
    });
  }

  // The generation the operator has applied, from the status conditions.
  statusGeneration(c) {
    const seen = (c.conditions || []).map((x) => x.observedGeneration).filter((g) => g !== undefined && g !== null);
    this.observed = seen.length ? Math.max(...seen) : null;
    this.showRollout();
  }

  showRollout() {
    if (!this.view || this.observed === null || this.observed === undefined) return setText(this.rollout, "");
    setText(this.rollout, this.observed >= this.view.generation
      ? `The operator has applied generation ${this.view.generation}.`
      : `The operator is applying generation ${this.view.generation} (the status shows ${this.observed}).`);
  }

  async load(message) {
    try {
      this.show(await api(apiPath("/clusters/", this.key, "/spec")));
      if (message) this.say(message, "ok");
    } catch (e) {
      this.fields.replaceChildren(el("p", { class: "error" }, "The spec could not be read: " + e.message));
      this.say("", "");
    }
  }

  show(view) {
    this.view = view;
    this.inputs.clear();
    const groups = GROUPS.map(([legend, match]) => {
      const fields = view.editable.filter((f) => match(f.field));
      return el("fieldset", {}, el("legend", {}, legend), ...fields.map((f) => this.input(f)));
    });
    this.fields.replaceChildren(...groups);
    setText(this.specHeading, `Whole spec (generation ${view.generation})`);
    setText(this.appliedBy, "A change is applied by " + view.appliedBy + ".");
    setText(this.specText, JSON.stringify(view.spec, null, 2));
    this.showRollout();
  }

  input(f) {
    const id = `${this.id}-${f.field.replace(/\./g, "-")}`;
    const bounds = f.minimum !== undefined ? ` (${f.minimum} to ${f.maximum})` : "";
    const help = el("span", { class: "help", id: id + "-help" }, `${f.description}${bounds}. ${f.field}`);
    const error = el("span", { class: "field-error", id: id + "-error" });
    const attrs = { id, name: f.field, "data-field": f.field, "aria-describedby": `${id}-help ${id}-error` };
    let input;
    if (f.kind === "boolean") {
      input = el("input", Object.assign(attrs, { type: "checkbox" }));
      input.checked = f.value === true;
      this.inputs.set(f.field, { input, error, f });
      return el("div", { class: "field check" }, input, " ", el("label", { for: id }, label(f.field)), " ", help, error);
    }
    input = el("input", Object.assign(attrs, f.kind === "integer"
      ? { type: "number", inputmode: "numeric", step: "1", min: f.minimum, max: f.maximum }
      : { type: "text", spellcheck: "false", autocomplete: "off", size: "8" }));
    input.value = String(f.value ?? "");
    this.inputs.set(f.field, { input, error, f });
    return el("div", { class: "field" }, el("label", { for: id }, label(f.field)), " ", input, " ", help, error);
  }

  // The fields whose input differs from the spec read: a patch, and what changes in words.
  changes() {
    const patch = {};
    const words = [];
    for (const [field, { input, f }] of this.inputs) {
      let value;
      if (f.kind === "boolean") value = input.checked;
      else if (f.kind === "integer") value = input.value.trim() === "" ? null : Number(input.value);
      else value = input.value.trim();
      if (value === f.value) continue;
      put(patch, field, value);
      words.push(`${field} ${JSON.stringify(f.value)} → ${JSON.stringify(value)}`);
    }
    return { patch, words };
  }

  clearErrors() {
    for (const { input, error } of this.inputs.values()) {
      input.removeAttribute("aria-invalid");
      setText(error, "");
    }
  }

  say(text, kind) {
    setText(this.result, text);
    this.result.className = "config-result " + kind;
  }

  async save() {
    if (!this.view) return this.load();
    this.clearErrors();
    const { patch, words } = this.changes();
    if (!words.length) return this.say("Nothing to save: no field was changed.", "ok");
    this.say(`Saving ${words.join(", ")}…`, "pending");
    try {
      const view = await api(apiPath("/clusters/", this.key, "/spec"), {
        method: "PATCH",
        body: JSON.stringify(patch),
        headers: { "Content-Type": "application/merge-patch+json", "If-Match": `"${this.view.generation}"` },
      });
      this.show(view);
      this.say(`Saved as generation ${view.generation}: ${words.join(", ")}.`, "ok");
    } catch (e) {
      this.refused(e);
    }
  }

  // A refusal: said, and the field it names marked and focused.
  refused(e) {
    const hint = e.status === 401 ? " Enter the dashboard token above and save again."
      : e.status === 412 ? " Reload to see the spec as it is now." : "";
    this.say(`Not saved: ${e.message}.${hint}`, "error");
    const named = (e.reason || "").match(/spec\.[A-Za-z.]+[A-Za-z]/g) || [];
    const hit = named.map((f) => this.inputs.get(f)).find((x) => x);
    if (hit) {
      hit.input.setAttribute("aria-invalid", "true");
      setText(hit.error, " " + e.reason);
      hit.input.focus();
    }
  }
}
