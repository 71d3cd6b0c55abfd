// Data products with their quality reports (computed by the API from the data).
import { api, el, fmt } from "./api.js";

function pct(x) {
  return x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)} %`;
}

function seconds(x) {
  if (x === null || x === undefined) return "–";
  if (x < 120) return `${x.toFixed(0)} s`;
  if (x < 7200) return `${(x / 60).toFixed(0)} min`;
  return `${(x / 3600).toFixed(1)} h`;
}

function qualityTable(report) {
  const windows = report?.windows ?? (Array.isArray(report) ? report : [report?.last_7_days, report?.last_30_days].filter(Boolean));
  if (!windows.length) return el("p", { class: "hint" }, "no quality report yet");
  return el("table", { class: "table quality" },
    el("thead", {}, el("tr", {}, ["window", "completeness", "freshness", "anomaly rate", "uptime", "readings"].map((h) => el("th", {}, h)))),
    el("tbody", {}, windows.map((w) => el("tr", {},
      el("td", {}, `${w.days} days`),
      el("td", {}, el("meter", { min: 0, max: 1, value: w.completeness ?? 0 }), " ", pct(w.completeness)),
      el("td", {}, seconds(w.freshness_s)),
      el("td", {}, pct(w.anomaly_rate)),
      el("td", {}, pct(w.uptime)),
      el("td", { class: "num" }, fmt(w.readings, 0))))));
}

export async function renderProducts(container, hint) {
  let products;
  try {
    const answer = await api("/v1/products");
    products = answer.data ?? answer;
  } catch (err) {
    hint.textContent = `Data products are not available: ${err.message}`;
    container.replaceChildren();
    return [];
  }
  hint.textContent = products.length ? "" : "No data products published yet.";
  const cards = await Promise.all(products.map(async (p) => {
    let report = p.quality;
    if (report === undefined) {
      try {
        report = await api(`/v1/products/${p.id}/quality`);
      } catch (err) {
        report = null;
      }
    }
    const price = p.price_month === null || p.price_month === undefined ? "free" : `${p.price_month} ${p.currency ?? ""}/month`;
    return el("div", { class: "product", dataset: { product: p.id } },
      el("h3", {}, p.title, " ", el("small", {}, `by ${p.provider ?? p.org ?? ""}`)),
      el("p", {}, p.description ?? ""),
      el("p", { class: "meta" }, `licence ${p.licence} · ${price} · ${(p.series ?? p.series_ids ?? []).length} series`),
      qualityTable(report));
  }));
  container.replaceChildren(...cards);
  return products;
}
