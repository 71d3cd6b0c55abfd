// The feed of recent anomalies, newest first; a click opens the series' chart.
import { api, ago, el, fmt, isoAgo } from "./api.js";

const FEED_LENGTH = 50;

export class AnomalyFeed {
  constructor({ list, summary, onSelectSeries }) {
    this.list = list;
    this.summary = summary;
    this.onSelectSeries = onSelectSeries;
  }

  async refresh(rangeS = 3600) {
    const answer = await api(`/v1/anomalies?start=${encodeURIComponent(isoAgo(rangeS))}&limit=10000`);
    const rows = answer.data ?? answer;
    const newest = rows.slice(-FEED_LENGTH).reverse();
    const kinds = {};
    for (const a of rows) kinds[a.kind] = (kinds[a.kind] || 0) + 1;
    this.summary.textContent = `${rows.length} in the last hour` +
      (rows.length ? ` · ${Object.entries(kinds).map(([k, n]) => `${k} ${n}`).join(", ")}` : "");
    if (!newest.length) {
      this.list.replaceChildren(el("li", { class: "empty" }, "No anomalies flagged in the last hour."));
      return rows;
    }
    this.list.replaceChildren(...newest.map((a) => el("li", {
      class: `anomaly kind-${a.kind}`, dataset: { series: a.series_id },
      onclick: () => this.onSelectSeries?.(a.series_id),
    },
    el("span", { class: "kind" }, a.kind),
    el("span", { class: "what" }, `${a.device} · ${a.quantity}`),
    el("span", { class: "value" }, fmt(a.value)),
    el("span", { class: "score", title: "score (higher is more anomalous)" }, `score ${fmt(a.score)}`),
    el("time", { datetime: a.time, title: a.time }, ago(a.time)))));
    return rows;
  }
}
