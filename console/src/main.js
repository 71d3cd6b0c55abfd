// The lab console: wires the views, refreshes the live ones every few seconds.
import "./style.css";
import { api, apiKey, el, setApiKey } from "./api.js";
import { AlarmsView } from "./alarms.js";
import { AnomalyFeed } from "./anomalies.js";
import { ChartView } from "./chart.js";
import { FleetView } from "./fleet.js";
import { Onboarding } from "./onboarding.js";
import { renderProducts } from "./products.js";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);

const state = { series: [], view: "overview", timer: null };

const chart = new ChartView({ container: $("chart"), info: $("chart-info") });
const fleet = new FleetView({
  mapId: "fleet-map", tableBody: $("fleet-list").querySelector("tbody"), summary: $("fleet-summary"),
  onSelectDevice: async (device) => {
    if (!state.series.some((x) => x.device === device)) await loadSeries().catch((err) => report("series", err));
    const s = state.series.find((x) => x.device === device);
    if (s) selectSeries(s.id);
  },
});
const feed = new AnomalyFeed({ list: $("anomaly-feed"), summary: $("anomalies-summary"), onSelectSeries: (id) => selectSeries(id) });
new Onboarding($("view-onboarding"));
const alarms = new AlarmsView({ table: $("alarm-list"), summary: $("alarms-summary"), badge: $("alarm-count"),
  filter: $("alarms-filter"), error: $("alarms-error") });

function report(where, err) {
  if (err?.status === 401) {
    signedOut(err.message);
    return;
  }
  console.warn(`${where}: ${err.message}`); // eslint-disable-line no-console
}

async function loadSeries() {
  const answer = await api("/v1/series?limit=10000");
  state.series = answer.data ?? answer;
  const select = $("series-select");
  const current = select.value;
  const byDevice = new Map();
  for (const s of state.series) {
    if (!byDevice.has(s.device)) byDevice.set(s.device, []);
    byDevice.get(s.device).push(s);
  }
  select.replaceChildren(...[...byDevice].map(([device, list]) => el("optgroup", { label: device },
    list.map((s) => el("option", { value: s.id }, `${s.device} · ${s.quantity}${s.unit ? ` (${s.unit})` : ""}`)))));
  if (current && state.series.some((s) => String(s.id) === current)) select.value = current;
  return state.series;
}

async function selectSeries(id) {
  let s = state.series.find((x) => x.id === Number(id));
  if (!s) {
    // a series newer than the list (a device onboarded since): reload the catalogue once
    await loadSeries().catch((err) => report("series", err));
    s = state.series.find((x) => x.id === Number(id));
    if (!s) return;
  }
  $("series-select").value = String(s.id);
  chart.select(s, Number($("range-select").value)).catch((err) => report("chart", err));
  $("chart-card").scrollIntoView({ behavior: "smooth", block: "nearest" });
}

async function refreshStatus() {
  const s = await api("/v1/status");
  const lag = s.lag_seconds ?? s.lag_s;
  $("lab-status").textContent = `${s.readings_stored ?? "?"} readings · ${s.series ?? "?"} series · ` +
    `${s.dead_letters ?? s.packs_dead_lettered ?? 0} dead letters` + (lag !== undefined && lag !== null ? ` · lag ${lag.toFixed?.(1) ?? lag} s` : "");
}

async function refreshOverview() {
  const tasks = [
    fleet.refresh().catch((err) => report("fleet", err)),
    feed.refresh().catch((err) => report("anomalies", err)),
    refreshStatus().catch((err) => report("status", err)),
  ];
  if (!state.series.length) {
    tasks.push(loadSeries().then((series) => {
      // start on the first air-quality series there is, else the first one
      const first = series.find((s) => s.quantity === "pm2_5") ?? series[0];
      if (first && !chart.series) selectSeries(first.id);
    }).catch((err) => report("series", err)));
  } else {
    tasks.push(chart.refresh().catch((err) => report("chart", err)));
  }
  await Promise.all(tasks);
}

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.classList.toggle("active", s.id === `view-${view}`);
  if (view === "overview") {
    fleet.invalidate();
    chart.resize();
  }
  if (view === "alarms" && apiKey()) alarms.refresh().catch((err) => report("alarms", err));
  if (view === "products" && apiKey()) renderProducts($("products"), $("products-hint")).catch((err) => report("products", err));
}

function tick() {
  if (!apiKey()) return;
  if (state.view === "overview") refreshOverview();
  alarms.refresh().catch((err) => report("alarms", err)); // the tab's count stays live in every view
}

function signedIn() {
  document.body.classList.add("signed-in");
  $("signin-banner").hidden = true;
  $("forget-key").hidden = false;
  $("key-state").textContent = "";
  clearInterval(state.timer);
  state.timer = setInterval(tick, REFRESH_MS);
  state.series = [];
  tick();
  if (state.view === "products") show("products");
}

function signedOut(message = "") {
  setApiKey("");
  document.body.classList.remove("signed-in");
  $("signin-banner").hidden = false;
  $("forget-key").hidden = true;
  $("key-state").textContent = message;
  clearInterval(state.timer);
}

$("key-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = $("api-key").value.trim();
  setApiKey(key);
  try {
    await api("/console/api/fleet");
    $("api-key").value = "";
    signedIn();
  } catch (err) {
    signedOut(err.status === 401 ? "key refused" : err.message);
  }
});
$("forget-key").addEventListener("click", () => signedOut());
for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
$("series-select").addEventListener("change", (e) => selectSeries(e.target.value));
$("range-select").addEventListener("change", () => selectSeries($("series-select").value));
window.addEventListener("resize", () => chart.resize());

if (apiKey()) signedIn();
else signedOut();
