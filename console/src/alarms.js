// The alarms view: the organisation's active alarms (open, acknowledged) and those cleared in the
// last 24 hours, refreshed live; an open alarm is acknowledged here with a comment.
import "./alarms.css";
import { ApiError, ago, api, el, fmt, isoAgo } from "./api.js";

const CLEARED_WINDOW_S = 86400;

function subject(a) {
  const where = a.device ? `${a.device_org && a.device_org !== a.org ? `${a.device_org}/` : ""}${a.device}` : "";
  return a.quantity ? `${where} · ${a.quantity}` : where;
}

function detail(a) {
  const d = a.detail || {};
  if (a.kind === "anomaly") return `${d.kind ?? "flag"} · peak score ${fmt(d.peak_score ?? d.score)} · ${a.hits} flags`;
  if (a.kind === "silence") return `no reading for ${fmt(d.intervals, 0)} intervals`;
  if (a.kind === "device") return d.state ? `gateway ${d.state}` : `buffer ${fmt(d.buffer_depth, 0)} packs`;
  return `value ${fmt(a.open_value)}`;
}

export class AlarmsView {
  constructor({ table, summary, badge, filter, error }) {
    this.body = table.querySelector("tbody");
    this.summary = summary;
    this.badge = badge;
    this.filter = filter;
    this.error = error;
    this.filter.addEventListener("change", () => this.refresh());
  }

  busy() {
    // a comment being typed is not wiped by the next refresh
    return this.body.contains(document.activeElement) && document.activeElement.tagName === "INPUT";
  }

  async refresh() {
    const active = await api("/v1/alarms?state=open&state=acknowledged&limit=1000");
    this.badge.textContent = active.length ? String(active.length) : "";
    this.badge.hidden = !active.length;
    if (this.busy()) return active;
    let rows = active;
    if (this.filter.value === "recent") {
      const cleared = await api(`/v1/alarms?state=cleared&start=${encodeURIComponent(isoAgo(CLEARED_WINDOW_S))}&limit=1000`);
      rows = active.concat(cleared);
    }
    const open = active.filter((a) => a.state === "open").length;
    this.summary.textContent = `${active.length} active · ${open} not acknowledged`;
    if (!rows.length) {
      this.body.replaceChildren(el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No alarms.")));
      return rows;
    }
    this.body.replaceChildren(...rows.map((a) => this.row(a)));
    return rows;
  }

  row(a) {
    const action = a.state === "open" ? this.ackForm(a)
      : a.state === "acknowledged" ? el("span", { class: "hint", title: a.acked_at }, `${a.acked_by}: ${a.ack_comment}`)
        : el("span", { class: "hint" }, `cleared ${ago(a.cleared_at)}`);
    return el("tr", { class: `alarm state-${a.state} severity-${a.severity}`, dataset: { alarm: a.id } },
      el("td", {}, el("span", { class: `severity severity-${a.severity}` }, a.severity)),
      el("td", {}, a.rule, el("small", {}, ` ${a.kind}`)),
      el("td", {}, subject(a)),
      el("td", {}, detail(a)),
      el("td", {}, el("time", { datetime: a.opened_at, title: a.opened_at }, ago(a.opened_at))),
      el("td", {}, a.state),
      el("td", {}, action));
  }

  ackForm(a) {
    const input = el("input", { type: "text", placeholder: "comment", "aria-label": `comment on alarm ${a.id}`,
      maxlength: 2000, required: "" });
    return el("form", { class: "ack", onsubmit: async (e) => {
      e.preventDefault();
      this.error.hidden = true;
      try {
        await api(`/v1/alarms/${a.id}/ack`, { method: "POST", body: { comment: input.value.trim() } });
        input.blur();
        await this.refresh();
      } catch (err) {
        this.error.hidden = false;
        this.error.textContent = err instanceof ApiError ? `acknowledging alarm ${a.id}: ${err.message}` : String(err);
      }
    } }, input, el("button", { type: "submit" }, "Acknowledge"));
  }
}
