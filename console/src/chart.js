// A live chart of one series (uPlot): its readings, with the stream detectors'
// anomalies marked as red points on the same axis.
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { api, isoAgo, fmt } from "./api.js";

const MAX_READINGS = 20000;

export class ChartView {
  constructor({ container, info }) {
    this.container = container;
    this.info = info;
    this.plot = null;
    this.series = null;
    this.rangeS = 3600;
  }

  select(series, rangeS = this.rangeS) {
    this.series = series;
    this.rangeS = rangeS;
    return this.refresh();
  }

  async refresh() {
    const s = this.series;
    if (!s) return;
    const start = encodeURIComponent(isoAgo(this.rangeS));
    const [readings, anomalies] = await Promise.all([
      api(`/v1/series/${s.id}/readings?start=${start}&limit=${MAX_READINGS}`),
      api(`/v1/anomalies?series_id=${s.id}&start=${start}`),
    ]);
    const rows = readings.data ?? readings;
    const flagged = anomalies.data ?? anomalies;
    const xs = rows.map((r) => Date.parse(r.time) / 1000);
    const ys = rows.map((r) => r.value);
    const marks = new Map(flagged.map((a) => [Date.parse(a.time) / 1000, a.value]));
    const anomalyYs = xs.map((x) => (marks.has(x) ? marks.get(x) : null));
    // anomalies whose reading is outside the fetched readings still show
    for (const [x, v] of marks) {
      if (!xs.includes(x)) {
        const i = xs.findIndex((t) => t > x);
        const at = i < 0 ? xs.length : i;
        xs.splice(at, 0, x); ys.splice(at, 0, null); anomalyYs.splice(at, 0, v);
      }
    }
    const last = rows.at(-1);
    this.info.textContent = `${rows.length} readings · ${flagged.length} anomalies` +
      (last ? ` · last ${fmt(last.value)} ${s.unit ?? ""}` : "");
    this.container.dataset.points = String(rows.length);
    this.container.dataset.anomalies = String(flagged.length);
    this.draw([xs, ys, anomalyYs], s);
  }

  draw(data, s) {
    const width = Math.max(300, this.container.clientWidth);
    if (this.plot && this.plotKey === s.id) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.plotKey = s.id;
    this.plot = new uPlot({
      width,
      height: 280,
      scales: { x: { time: true } },
      legend: { live: true },
      series: [
        {},
        { label: `${s.device} ${s.quantity}${s.unit ? ` (${s.unit})` : ""}`, stroke: "#2c7fb8", width: 1.5, spanGaps: false },
        { label: "anomaly", stroke: "#d73027", width: 0, points: { show: true, size: 9, fill: "#d73027", stroke: "#d73027" } },
      ],
      axes: [{}, { label: s.unit ?? "" }],
    }, data, this.container);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: Math.max(300, this.container.clientWidth), height: 280 });
  }
}
