// The public city page: open series on a map, charts per quantity, what the numbers mean,
// providers, licences and downloads. Plain ES module, no libraries, no outside requests:
// map tiles are fetched only when the lab configures a tile source (CITYLAB_MAP_TILE_URL).

const TEXT = {
  nb: {
    title: "Åpne data fra byen", intro: "Målinger fra sensorer i byen som leverandørene har gjort åpne: " +
      "siste verdier der de måles, utviklingen det siste døgnet og uken, hva tallene betyr, og hvor du laster dem ned.",
    map: "Siste målinger", charts: "Utvikling", day: "Siste døgn", week: "Siste uke", meaning: "Hva tallene betyr",
    data: "Data, leverandører og lisenser", catalog: "Hele katalogen (DCAT-AP, for dataportaler):",
    provider: "Leverandør", licence: "Lisens", download: "Last ned", csvDay: "CSV, siste døgn",
    csvWeek: "CSV, siste uke", parquetWeek: "Parquet, siste uke", entry: "Katalogoppføring",
    noData: "Ingen åpne data ennå.", noReadings: "ingen målinger", loading: "Henter data …",
    outline: "Kartet viser bydelene og sensorene (ingen bakgrunnskart er satt opp).",
    tiles: "Bakgrunnskart:", unit: "Enhet", classes: "Luftkvalitetsklasser (timesmiddel)",
    external: "Data fra nabokommuner", source: "fra", sensors: "sensorer", mean: "gjennomsnitt", range: "min–maks", updated: "Oppdatert", district: "område", error: "Kunne ikke hente data:",
  },
  en: {
    title: "Open data from the city", intro: "Readings of the city's sensors that their providers have made open: " +
      "the latest values where they are measured, the last day and week, what the numbers mean, and where to download them.",
    map: "Latest readings", charts: "Over time", day: "Last day", week: "Last week", meaning: "What the numbers mean",
    data: "Data, providers and licences", catalog: "The whole catalogue (DCAT-AP, for data portals):",
    provider: "Provider", licence: "Licence", download: "Download", csvDay: "CSV, last day",
    csvWeek: "CSV, last week", parquetWeek: "Parquet, last week", entry: "Catalogue entry",
    noData: "No open data yet.", noReadings: "no readings", loading: "Loading data …",
    outline: "The map shows the districts and the sensors (no background map is configured).",
    tiles: "Background map:", unit: "Unit", classes: "Air-quality classes (hourly mean)",
    external: "Data from neighbouring cities", source: "from", sensors: "sensors", mean: "mean", range: "min–max", updated: "Updated", district: "area", error: "Could not load data:",
  },
};

const SVG = "http://www.w3.org/2000/svg";
let lang = pickLanguage();
let overview = null;
let range = "day";
let selected = null;

function pickLanguage() {
  const asked = new URLSearchParams(location.search).get("lang");
  if (asked === "nb" || asked === "en") return asked;
  return /^(nb|no|nn)\b/i.test(navigator.language || "") ? "nb" : "en";
}

const t = (key) => TEXT[lang][key];

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

async function getJSON(path) {
  const r = await fetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.json().catch(() => ({}))).detail || ""}`);
  return r.json();
}

function number(value, unit) {
  if (value === null || value === undefined) return "–";
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return value.toLocaleString(lang === "nb" ? "nb-NO" : "en-GB", { maximumFractionDigits: digits });
}

function quantityOf(name) { return overview.quantities.find((q) => q.name === name); }
function label(q) { return lang === "nb" ? q.label_nb : q.label_en; }
function classOf(q, value) {
  if (!q || value === null) return null;
  return q.classes.find((c) => value >= c.low && (c.high === null || value < c.high)) || null;
}
function className(c) { return lang === "nb" ? c.label_nb : c.label_en; }

// Map --------------------------------------------------------------------------

function mercator(lat, lon) {
  const s = Math.sin((lat * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

function hull(points) {
  const p = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const half = (pts) => {
    const out = [];
    for (const q of pts) {
      while (out.length >= 2 && cross(out.at(-2), out.at(-1), q) <= 0) out.pop();
      out.push(q);
    }
    return out;
  };
  const lower = half(p), upper = half(p.slice().reverse());
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

function places() {
  const byDevice = new Map();
  for (const s of overview.series) {
    if (!byDevice.has(s.device)) byDevice.set(s.device, { device: s.device, area: s.area, lat: s.lat, lon: s.lon, series: [] });
    byDevice.get(s.device).series.push(s);
  }
  return [...byDevice.values()];
}

function worstClass(place) {
  let worst = null, rank = -1;
  for (const s of place.series) {
    const q = quantityOf(s.quantity);
    const c = classOf(q, s.value);
    if (c && q.classes.indexOf(c) > rank) { worst = c; rank = q.classes.indexOf(c); }
  }
  return worst;
}

function drawMap() {
  const box = document.getElementById("map");
  box.replaceChildren();
  const pts = places();
  const hint = document.getElementById("map-hint");
  if (!pts.length) { hint.textContent = t("noData"); return; }
  const W = box.clientWidth || 600, H = box.clientHeight || 375;
  const xy = pts.map((p) => mercator(p.lat, p.lon));
  let [x0, y0, x1, y1] = [Math.min(...xy.map((p) => p[0])), Math.min(...xy.map((p) => p[1])),
    Math.max(...xy.map((p) => p[0])), Math.max(...xy.map((p) => p[1]))];
  const minSpan = 0.00002;   // about 800 m: one sensor still gets a neighbourhood around it
  const spanX = Math.max(x1 - x0, minSpan), spanY = Math.max(y1 - y0, minSpan);
  const zoom = Math.max(2, Math.min(18, Math.floor(Math.log2(Math.min(W / (spanX * 1.4), H / (spanY * 1.4)) / 256))));
  const world = 256 * 2 ** zoom;
  const cx = ((x0 + x1) / 2) * world - W / 2, cy = ((y0 + y1) / 2) * world - H / 2;
  const px = (p) => [p[0] * world - cx, p[1] * world - cy];

  const tiles = overview.map.tile_url;
  if (tiles) {
    const n = 2 ** zoom;
    for (let tx = Math.floor(cx / 256); tx <= Math.floor((cx + W) / 256); tx++) {
      for (let ty = Math.floor(cy / 256); ty <= Math.floor((cy + H) / 256); ty++) {
        if (ty < 0 || ty >= n) continue;
        const url = tiles.replace("{z}", zoom).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
        const img = el("img", { class: "tile", src: url, alt: "" });
        img.style.left = `${tx * 256 - cx}px`; img.style.top = `${ty * 256 - cy}px`;
        box.append(img);
      }
    }
    hint.textContent = `${t("tiles")} ${overview.map.attribution || new URL(tiles.replace(/[{}]/g, ""), location.href).host}`;
  } else {
    hint.textContent = t("outline");
  }
  const layer = svg("svg", { viewBox: `0 0 ${W} ${H}`, "aria-label": t("map") });
  if (!tiles) {
    // A plain outline of the covered city: the sensors' extent with a margin.
    const all = xy.map(px);
    const pad = 28;
    const [ax, ay] = [Math.min(...all.map((p) => p[0])) - pad, Math.min(...all.map((p) => p[1])) - pad];
    const [bx, by] = [Math.max(...all.map((p) => p[0])) + pad, Math.max(...all.map((p) => p[1])) + pad];
    layer.append(svg("rect", { class: "outline", x: ax, y: ay, width: bx - ax, height: by - ay, rx: 18 }));
  }
  // A grid and a scale bar in metres, so that distances read without a background map.
  const metresPerPx = (40075016.686 * Math.cos((pts[0].lat * Math.PI) / 180)) / world;
  const step = [50, 100, 250, 500, 1000, 2000, 5000, 10000].find((m) => m / metresPerPx >= 60) || 20000;
  const stepPx = step / metresPerPx;
  if (!tiles) {
    for (let gx = (-cx % stepPx + stepPx) % stepPx; gx < W; gx += stepPx) layer.append(svg("line", { class: "grid", x1: gx, x2: gx, y1: 0, y2: H }));
    for (let gy = (-cy % stepPx + stepPx) % stepPx; gy < H; gy += stepPx) layer.append(svg("line", { class: "grid", x1: 0, x2: W, y1: gy, y2: gy }));
  }
  layer.append(svg("path", { class: "scale", d: `M12 ${H - 18} v6 h${stepPx} v-6` }));
  layer.append(svg("text", { class: "scale-label", x: 12, y: H - 22 }, step >= 1000 ? `${step / 1000} km` : `${step} m`));
  const byArea = new Map();
  pts.forEach((p, i) => { if (!byArea.has(p.area)) byArea.set(p.area, []); byArea.get(p.area).push(px(xy[i])); });
  for (const [area, points] of byArea) {
    if (points.length < 3) {   // a district of one or two sensors: a circle around them
      const c = points.reduce((a, p) => [a[0] + p[0] / points.length, a[1] + p[1] / points.length], [0, 0]);
      const r = 30 + Math.max(...points.map((p) => Math.hypot(p[0] - c[0], p[1] - c[1])));
      layer.append(svg("circle", { class: "district", cx: c[0], cy: c[1], r }));
      layer.append(svg("text", { class: "district-label", x: c[0], y: c[1] - r - 4, "text-anchor": "middle" }, `${t("district")} ${area}`));
      continue;
    }
    const h = hull(points);
    layer.append(svg("polygon", { class: "district", points: h.map((p) => p.join(",")).join(" ") }));
    const c = h.reduce((a, p) => [a[0] + p[0] / h.length, a[1] + p[1] / h.length], [0, 0]);
    layer.append(svg("text", { class: "district-label", x: c[0], y: c[1] - 14, "text-anchor": "middle" }, `${t("district")} ${area}`));
  }
  pts.forEach((p, i) => {
    const [x, y] = px(xy[i]);
    const c = worstClass(p);
    const dot = svg("circle", { class: "sensor", cx: x, cy: y, r: 8, fill: c ? c.colour : "#8fb3d9", "data-device": p.device });
    dot.append(svg("title", {}, `${p.device}: ` + p.series.map((s) => `${label(quantityOf(s.quantity))} ${number(s.value)} ${quantityOf(s.quantity).unit_symbol}`).join(", ")));
    dot.addEventListener("click", () => { selected = p.device; renderPlaces(); });
    layer.append(dot);
    const first = p.series.find((s) => s.value !== null);
    if (first) layer.append(svg("text", { class: "sensor-label", x: x + 11, y: y + 4 }, `${number(first.value)} ${quantityOf(first.quantity).unit_symbol}`));
  });
  box.append(layer);
}

function renderPlaces() {
  const list = document.getElementById("places");
  list.replaceChildren(...places().map((p) => el("li", { class: p.device === selected ? "selected" : "", "data-device": p.device },
    el("div", { class: "where" }, p.device, " ", el("span", { class: "hint" }, `· ${t("district")} ${p.area}`)),
    ...p.series.map((s) => {
      const q = quantityOf(s.quantity);
      const c = classOf(q, s.value);
      return el("div", { class: "value" }, el("span", {}, label(q)),
        el("span", {}, s.value === null ? t("noReadings") : `${number(s.value)} ${q.unit_symbol} `,
          c ? el("span", { class: "badge", style: `background:${c.colour}` }, className(c)) : null));
    }))));
}

// Charts -------------------------------------------------------------------------

function drawChart(q, data) {
  const W = 480, H = 220, L = 44, R = 10, T = 10, B = 26;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label(q) });
  if (!data.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, t("noReadings")));
    return root;
  }
  const ts = data.map((d) => Date.parse(d.t));
  const lo = Math.min(0, ...data.map((d) => d.min)), hi = Math.max(...data.map((d) => d.max)) * 1.05 || 1;
  const t0 = Math.min(...ts), t1 = Math.max(...ts, t0 + 1);
  const x = (v) => L + ((v - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  for (const c of q.classes) {      // the air-quality classes as faint bands behind the data
    if (c.low >= hi) continue;
    const top = y(Math.min(c.high ?? hi, hi)), bottom = y(Math.max(c.low, lo));
    root.append(svg("rect", { x: L, y: top, width: W - L - R, height: Math.max(0, bottom - top), fill: c.colour, opacity: 0.18 }));
  }
  for (let i = 0; i <= 4; i++) {
    const v = lo + ((hi - lo) * i) / 4;
    root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    root.append(svg("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end" }, number(v)));
  }
  const locale = lang === "nb" ? "nb-NO" : "en-GB";
  const fmt = range === "day" ? { hour: "2-digit", minute: "2-digit" } : { weekday: "short", day: "numeric" };
  for (let i = 0; i <= 3; i++) {
    const v = t0 + ((t1 - t0) * i) / 3;
    const anchor = i === 0 ? "start" : i === 3 ? "end" : "middle";
    root.append(svg("text", { x: x(v), y: H - 8, "text-anchor": anchor }, new Date(v).toLocaleString(locale, fmt)));
  }
  const band = data.map((d, i) => `${x(ts[i])},${y(d.max)}`).concat(data.map((d, i) => `${x(ts[i])},${y(d.min)}`).reverse());
  root.append(svg("polygon", { class: "band", points: band.join(" ") }));
  root.append(svg("polyline", { class: "line", points: data.map((d, i) => `${x(ts[i])},${y(d.mean)}`).join(" ") }));
  return root;
}

async function renderCharts() {
  const box = document.getElementById("charts");
  const cards = await Promise.all(overview.quantities.map(async (q) => {
    const chart = await getJSON(`/open/api/chart?quantity=${encodeURIComponent(q.name)}&range=${range}`);
    return el("div", { class: "chart", "data-quantity": q.name },
      el("h3", {}, `${label(q)} (${q.unit_symbol})`),
      drawChart(q, chart.data),
      el("div", { class: "hint" }, `${t("mean")} — ${t("range")} · ${chart.series} ${chart.series === 1 ? "sensor" : t("sensors")}`));
  }));
  box.replaceChildren(...cards);
}

// Meaning, products ------------------------------------------------------------------

function renderMeaning() {
  document.getElementById("meaning").replaceChildren(...overview.quantities.map((q) => el("div", { class: "quantity", "data-quantity": q.name },
    el("strong", {}, label(q)), " — ", `${t("unit")}: ${q.unit_symbol} (`,
    q.unit_definition ? el("a", { href: q.unit_definition, rel: "noopener" }, q.unit_name) : q.unit_name, ")",
    el("div", { class: "hint" }, q.description),
    q.classes.length ? el("table", { class: "classes" },
      el("caption", { class: "hint" }, t("classes")),
      ...q.classes.map((c) => el("tr", {},
        el("td", {}, el("span", { class: "badge", style: `background:${c.colour}` }, className(c))),
        el("td", {}, c.high === null ? `≥ ${number(c.low)} ${q.unit_symbol}` : `${number(c.low)}–${number(c.high)} ${q.unit_symbol}`),
        el("td", {}, lang === "en" ? c.advice_en : "")))) : null)));
}

function exportLink(product, fmt, days) {
  const start = new Date(Date.now() - days * 86400e3).toISOString();
  const params = new URLSearchParams(product.series_ids.map((id) => ["series_id", id]));
  params.set("format", fmt); params.set("start", start);
  return `/v1/exports/readings?${params}`;
}

function renderProducts() {
  document.getElementById("products").replaceChildren(...overview.products.map((p) => el("div", { class: "product", id: `product-${p.id}` },
    el("strong", {}, lang === "nb" ? p.title_nb : p.title),
    el("div", {}, `${t("provider")}: ${p.provider} · ${t("licence")}: `, el("a", { href: p.licence_uri, rel: "license" }, p.licence)),
    el("div", { class: "downloads" }, `${t("download")}: `,
      el("a", { href: exportLink(p, "csv", 1), class: "dl-csv-day" }, t("csvDay")),
      el("a", { href: exportLink(p, "csv", 7), class: "dl-csv-week" }, t("csvWeek")),
      el("a", { href: exportLink(p, "parquet", 7), class: "dl-parquet-week" }, t("parquetWeek")),
      el("a", { href: `${new URL(p.dataset).pathname}.ttl` }, t("entry"))))));
}

function renderExternal() {
  const card = document.getElementById("external-card");
  card.hidden = !overview.external.length;
  document.getElementById("external").replaceChildren(...overview.external.map((d) => el("li", {},
    el("a", { href: d.landing_page || d.iri, rel: "noopener" }, d.title),
    d.publisher ? ` · ${d.publisher}` : "", el("span", { class: "hint" }, ` (${t("source")} ${new URL(d.source).host})`))));
}

// Page ---------------------------------------------------------------------------------

function applyLanguage() {
  document.documentElement.lang = lang;
  document.title = t("title");
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  for (const b of document.querySelectorAll("[data-lang]")) b.classList.toggle("active", b.dataset.lang === lang);
}

async function render() {
  applyLanguage();
  if (!overview) return;
  drawMap();
  renderPlaces();
  renderMeaning();
  renderProducts();
  renderExternal();
  await renderCharts();
  document.getElementById("state").textContent = `${t("updated")} ${new Date(overview.generated_at).toLocaleString(lang === "nb" ? "nb-NO" : "en-GB")}`;
  document.body.dataset.ready = "true";
}

async function start() {
  applyLanguage();
  document.getElementById("state").textContent = t("loading");
  for (const b of document.querySelectorAll("[data-lang]")) {
    b.addEventListener("click", () => { lang = b.dataset.lang; document.body.dataset.ready = "false"; render(); });
  }
  for (const b of document.querySelectorAll("[data-range]")) {
    b.addEventListener("click", async () => {
      range = b.dataset.range;
      for (const o of document.querySelectorAll("[data-range]")) o.classList.toggle("active", o === b);
      document.body.dataset.ready = "false";
      await renderCharts();
      document.body.dataset.ready = "true";
    });
  }
  try {
    overview = await getJSON("/open/api/overview");
  } catch (err) {
    document.getElementById("state").textContent = `${t("error")} ${err.message}`;
    return;
  }
  await render();
  window.addEventListener("resize", () => drawMap());
}

start();
