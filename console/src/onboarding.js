// SME onboarding: register a device with the API key, show its MQTT credentials
// once, then wait for its first reading to arrive.
import { api, el, fmt, isoAgo } from "./api.js";

const QUANTITIES = [
  ["pm2_5", "ug/m3", 60], ["pm10", "ug/m3", 60], ["no2", "ug/m3", 60], ["temperature", "Cel", 60],
  ["humidity", "%RH", 60], ["noise", "dB", 60], ["power", "W", 60],
];

function sensorRow(quantity = "pm2_5", unit = "ug/m3", interval = 60) {
  const row = el("div", { class: "sensor-row" },
    el("input", { name: "quantity", value: quantity, required: "", "aria-label": "quantity", placeholder: "quantity" }),
    el("input", { name: "unit", value: unit, "aria-label": "unit", placeholder: "SenML unit" }),
    el("input", { name: "interval_s", type: "number", min: "1", value: interval, "aria-label": "interval (s)" }),
    el("button", { type: "button", class: "secondary", onclick: () => row.remove() }, "×"));
  return row;
}

export class Onboarding {
  constructor(root) {
    this.root = root;
    this.q = (id) => root.querySelector(`#${id}`);
    this.rows = this.q("sensor-rows");
    this.rows.append(sensorRow(...QUANTITIES[0]), sensorRow(...QUANTITIES[3]));
    this.q("add-sensor").addEventListener("click", () => this.rows.append(sensorRow("", "", 60)));
    this.q("device-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.register();
    });
    this.waiting = null;
  }

  body() {
    const num = (id) => {
      const v = this.q(id).value;
      return v === "" ? null : Number(v);
    };
    const sensors = [...this.rows.querySelectorAll(".sensor-row")].map((row) => ({
      quantity: row.querySelector("[name=quantity]").value.trim(),
      unit: row.querySelector("[name=unit]").value.trim() || null,
      interval_s: Number(row.querySelector("[name=interval_s]").value) || null,
    })).filter((s) => s.quantity);
    const lat = num("device-lat");
    const lon = num("device-lon");
    const body = { device: this.q("device-id").value.trim(), sensors };
    if (lat !== null && lon !== null) body.location = { lat, lon };
    const gateway = this.q("device-gateway").value.trim();
    if (gateway) body.gateway = gateway;
    return body;
  }

  async register() {
    const error = this.q("onboard-error");
    error.hidden = true;
    const button = this.q("register");
    button.disabled = true;
    try {
      const answer = await api("/v1/devices", { method: "POST", body: this.body() });
      this.showCredentials(answer);
      this.waitForFirstReading(answer.device);
    } catch (err) {
      const details = (err.problem?.errors ?? []).map((e) => `${e.loc ?? e.field ?? ""} ${e.msg ?? e.message ?? ""}`.trim());
      error.textContent = (err.status === 401 ? `Your API key was refused: ${err.message}` : err.message) +
        (details.length ? ` (${details.join("; ")})` : "");
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  }

  showCredentials(answer) {
    const mqtt = answer.mqtt ?? {};
    const prefix = (answer.topic_prefix ?? `lab/${answer.org}/${answer.device}`).replace(/\/+$/, "");
    this.q("cred-url").textContent = mqtt.url ?? "";
    this.q("cred-username").textContent = mqtt.username ?? "";
    this.q("cred-password").textContent = mqtt.password ?? "";
    this.q("cred-topic").textContent = `${prefix}/up`;
    const url = new URL((mqtt.url ?? "mqtt://localhost:1883").replace(/^mqtts?:/, "http:"));
    this.q("cred-example").textContent =
      `mosquitto_pub -h ${url.hostname} -p ${url.port || 1883} -i '${mqtt.client_id}' -u '${mqtt.username}' -P '<password>' -q 1 \\\n` +
      `  -t '${prefix}/up' \\\n` +
      `  -m '[{"bn":"${answer.device}/","bt":'$(date +%s)',"n":"pm2_5","u":"ug/m3","v":7.5}]'`;
    this.q("credentials").hidden = false;
    this.q("device-form").reset();
  }

  waitForFirstReading(device) {
    clearInterval(this.waiting);
    const box = this.q("first-reading");
    const state = this.q("first-reading-state");
    box.hidden = false;
    box.classList.remove("arrived");
    state.textContent = `waiting for the first reading of ${device}…`;
    const started = Date.now();
    const poll = async () => {
      try {
        const catalogue = await api(`/v1/series?limit=10000`);
        const mine = (catalogue.data ?? catalogue).filter((s) => s.device === device);
        for (const s of mine) {
          const r = await api(`/v1/series/${s.id}/readings?start=${encodeURIComponent(isoAgo(86400))}&limit=1`);
          const first = (r.data ?? r)[0];
          if (first) {
            clearInterval(this.waiting);
            box.classList.add("arrived");
            state.textContent = `First reading arrived: ${s.quantity} = ${fmt(first.value)} ${s.unit ?? ""} at ` +
              `${new Date(first.time).toLocaleTimeString()} (${((Date.now() - started) / 1000).toFixed(0)} s after registering).`;
            return;
          }
        }
        state.textContent = `waiting for the first reading of ${device}… (${((Date.now() - started) / 1000).toFixed(0)} s)`;
      } catch (err) {
        state.textContent = `waiting for the first reading of ${device}… (${err.message})`;
      }
    };
    this.waiting = setInterval(poll, 1000);
    poll();
  }
}
