// The fleet: a list and a map with each device's status. The map draws the devices
// and an outline of each area on a plain background: no map tiles, no network.
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

export class FleetView {
  constructor({ mapId, tableBody, summary, onSelectDevice }) {
    this.map = L.map(mapId, { zoomControl: true, attributionControl: false, zoomSnap: 0.25 });
    this.map.setView([58.97, 5.73], 13);
    this.areas = L.layerGroup().addTo(this.map);
    this.markers = L.layerGroup().addTo(this.map);
    this.tableBody = tableBody;
    this.summary = summary;
    this.onSelectDevice = onSelectDevice;
    this.fitted = false;
    this.devices = [];
  }

  async refresh() {
    const { devices } = await api("/console/api/fleet");
    this.devices = devices;
    this.render(devices);
    return devices;
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
      this.map.fitBounds(L.latLngBounds(devices.map((d) => [d.lat, d.lon])).pad(0.1));
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
