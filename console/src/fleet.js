// The fleet: a list and a map with each device's status. The map draws the devices and
// an outline of each area over the lab's tile source (CITYLAB_MAP_TILE_URL) or, with none
// set, over a plain outline of the covered city with a grid in metres: then no network.
import L from "leaflet";
import "leaflet/dist/leaflet.css";
import { api, ago, el, fmt } from "./api.js";

const OFFLINE_AFTER_S = 300; // as the Grafana "Fleet health" dashboard (dashboards/fleet.py)
const COLOURS = { online: "#1a9850", offline: "#d73027", disabled: "#8c8c8c", silent: "#fdae61" };

export function deviceStatus(d) {
  if (!d.enabled) return "disabled";
  if (d.kind === "gateway" && d.state) {
    const fresh = d.status_at && (Date.now() - Date.parse(d.status_at)) / 1000 < OFFLINE_AFTER_S;
    return d.state === "online" && fresh ? "online" : "offline";
  }
  if (!d.last_seen) return "silent";
  return (Date.now() - Date.parse(d.last_seen)) / 1000 < OFFLINE_AFTER_S ? "online" : "offline";
}

function hull(points) {
  // Andrew's monotone chain over [lat, lon] pairs.
  const p = [...points].sort((a, b) => a[1] - b[1] || a[0] - b[0]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[1] - o[1]) * (b[0] - o[0]) - (a[0] - o[0]) * (b[1] - o[1]);
  const lower = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower.at(-2), lower.at(-1), q) <= 0) lower.pop();
    lower.push(q);
  }
  const upper = [];
  for (const q of p.reverse()) {
    while (upper.length >= 2 && cross(upper.at(-2), upper.at(-1), q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

const GRID_STEPS_M = [50, 100, 250, 500, 1000, 2000, 5000, 10000, 20000];
const M_PER_DEG_LAT = 111320;

// The plain background without a tile source: the devices' extent with a margin, and a
// grid at a round number of metres (about eight lines across), so distances still read.
function outline(devices) {
  const lats = devices.map((d) => d.lat), lons = devices.map((d) => d.lon);
  const mid = (Math.min(...lats) + Math.max(...lats)) / 2;
  const mPerDegLon = M_PER_DEG_LAT * Math.cos((mid * Math.PI) / 180);
  const spanM = Math.max((Math.max(...lats) - Math.min(...lats)) * M_PER_DEG_LAT,
    (Math.max(...lons) - Math.min(...lons)) * mPerDegLon, 400);
  const step = GRID_STEPS_M.find((m) => spanM / m <= 8) ?? GRID_STEPS_M.at(-1);
  const [dLat, dLon] = [step / M_PER_DEG_LAT, step / mPerDegLon];
  const south = Math.floor((Math.min(...lats) - dLat / 2) / dLat) * dLat;
  const north = Math.ceil((Math.max(...lats) + dLat / 2) / dLat) * dLat;
  const west = Math.floor((Math.min(...lons) - dLon / 2) / dLon) * dLon;
  const east = Math.ceil((Math.max(...lons) + dLon / 2) / dLon) * dLon;
  const layers = [L.rectangle([[south, west], [north, east]],
    { pane: "outline", className: "outline", color: "#9fb0c2", weight: 1, fillColor: "#fff", fillOpacity: 1, interactive: false })];
  const grid = { pane: "outline", className: "grid", color: "#dfe6ed", weight: 1, interactive: false };
  for (let lat = south + dLat; lat < north - dLat / 2; lat += dLat) layers.push(L.polyline([[lat, west], [lat, east]], grid));
  for (let lon = west + dLon; lon < east - dLon / 2; lon += dLon) layers.push(L.polyline([[south, lon], [north, lon]], grid));
  return { layers, bounds: L.latLngBounds([[south, west], [north, east]]), key: [south, west, north, east].join() };
}

export class FleetView {
  constructor({ mapId, tableBody, summary, onSelectDevice }) {
    this.map = L.map(mapId, { zoomControl: true, attributionControl: false, zoomSnap: 0.25 });
    this.map.setView([58.97, 5.73], 13);
    this.map.createPane("outline").style.zIndex = 350;   // above tiles, below the areas and markers
    L.control.scale({ imperial: false }).addTo(this.map);
    this.background = L.layerGroup().addTo(this.map);
    this.backgroundKey = null;
    this.areas = L.layerGroup().addTo(this.map);
    this.markers = L.layerGroup().addTo(this.map);
    this.tableBody = tableBody;
    this.summary = summary;
    this.onSelectDevice = onSelectDevice;
    this.fitted = false;
    this.devices = [];
  }

  async refresh() {
    const { devices, map } = await api("/console/api/fleet");
    this.devices = devices;
    this.drawBackground(map, devices);
    this.render(devices);
    return devices;
  }

  drawBackground(map, devices) {
    const tiles = map?.tile_url;
    if (tiles) {
      if (this.backgroundKey === tiles) return;
      this.background.clearLayers();
      L.tileLayer(tiles, { maxZoom: 19, className: "tile" }).addTo(this.background);
      L.control.attribution({ prefix: false }).addAttribution(map.attribution || new URL(tiles.replace(/[{}]/g, ""), location.href).host)
        .addTo(this.map);
      this.backgroundKey = tiles;
      return;
    }
    if (!devices.length) return;
    const plain = outline(devices);
    if (this.backgroundKey === plain.key) return;
    this.background.clearLayers();
    for (const layer of plain.layers) layer.addTo(this.background);
    if (!this.outlineNote) {
      this.outlineNote = L.control.attribution({ prefix: false })
        .addAttribution("plain outline: no tile source set (CITYLAB_MAP_TILE_URL)")
        .addTo(this.map);
    }
    this.backgroundKey = plain.key;
    this.outlineBounds = plain.bounds;
  }

  render(devices) {
    const counts = { online: 0, offline: 0, disabled: 0, silent: 0 };
    for (const d of devices) counts[deviceStatus(d)] += 1;
    this.summary.textContent = `${devices.length} devices · ${counts.online} online · ${counts.offline} offline` +
      (counts.silent ? ` · ${counts.silent} never heard` : "");

    this.areas.clearLayers();
    const byArea = new Map();
    for (const d of devices) {
      if (!byArea.has(d.area)) byArea.set(d.area, []);
      byArea.get(d.area).push([d.lat, d.lon]);
    }
    for (const [area, points] of byArea) {
      if (points.length < 3) continue;
      L.polygon(hull(points), { color: "#4a6fa5", weight: 1, fillOpacity: 0.06, dashArray: "4 4" })
        .bindTooltip(`area ${area}`, { sticky: true }).addTo(this.areas);
    }

    this.markers.clearLayers();
    for (const d of devices) {
      const status = deviceStatus(d);
      const marker = L.circleMarker([d.lat, d.lon], {
        radius: d.kind === "gateway" ? 9 : 6,
        color: d.kind === "gateway" ? "#222" : COLOURS[status],
        weight: d.kind === "gateway" ? 2 : 1,
        fillColor: COLOURS[status],
        fillOpacity: 0.85,
        className: `marker marker-${status}`,
      });
      marker.bindTooltip(`${d.device} (${d.kind}) · ${status} · ${ago(d.last_seen || d.status_at)}`);
      marker.on("click", () => this.onSelectDevice?.(d.device));
      marker.addTo(this.markers);
    }
    if (!this.fitted && devices.length) {
      // the whole outline when there is one (its edge shows where the lab's sensors end)
      this.map.fitBounds(this.outlineBounds?.pad(0.02) ?? L.latLngBounds(devices.map((d) => [d.lat, d.lon])).pad(0.1));
      this.fitted = true;
    }

    this.tableBody.replaceChildren(...devices.map((d) => {
      const status = deviceStatus(d);
      return el("tr", { class: `row-${status}`, dataset: { device: d.device }, onclick: () => this.onSelectDevice?.(d.device) },
        el("td", {}, d.device),
        el("td", {}, d.kind),
        el("td", {}, d.area),
        el("td", {}, el("span", { class: `badge badge-${status}` }, status)),
        el("td", { title: d.last_seen || "" }, ago(d.last_seen || d.status_at)),
        el("td", { class: "num" }, d.kind === "gateway" ? fmt(d.buffer_depth, 0) : ""));
    }));
  }

  invalidate() {
    this.map.invalidateSize();
  }
}
