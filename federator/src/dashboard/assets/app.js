// The dashboard: polls the federator's API every few seconds (and soon after any live event),
// renders each view from the answers, and streams events over SSE. Same origin only.
import { el, put, ago, ms, shares } from "/dashboard/dom.js";

const POLL_MS = 3000;
const MAX_EVENTS = 200;
const $ = (id) => document.getElementById(id);

async function api(path) {
  const r = await fetch(`/api/v1/${path}`, { headers: { Accept: "application/json" } });
  if (!r.ok) {
    let msg = `${r.status} ${r.statusText}`;
    try { msg = (await r.json()).error || msg; } catch { /* not JSON: keep the status */ }
    throw new Error(`${path}: ${msg}`);
  }
  return r.json();
}

function banner(text) {
  const b = $("banner");
  b.hidden = !text;
  b.textContent = text ? `Federator API unreachable or failing: ${text}. Showing the last data; retrying.` : "";
}

// ---- topology ----------------------------------------------------------------------------

function renderTopology(clusters, gateways) {
  const byCluster = new Map();
  for (const g of gateways) {
    if (!byCluster.has(g.cluster)) byCluster.set(g.cluster, []);
    byCluster.get(g.cluster).push(g);
  }
  const clouds = new Map(); // cloud → region → [cluster]
  for (const c of clusters) {
    if (!clouds.has(c.cloud)) clouds.set(c.cloud, new Map());
    const regions = clouds.get(c.cloud);
    if (!regions.has(c.region)) regions.set(c.region, []);
    regions.get(c.region).push(c);
  }
  const root = $("topology");
  if (clusters.length === 0) {
    put(root, el("p", { class: "empty" }, "No clusters in the catalog yet: check the catalog sources below."));
    return;
  }
  const nodes = [];
  for (const [cloud, regions] of [...clouds].sort()) {
    const regionNodes = [...regions].sort().map(([region, cs]) =>
      el("div", { class: "region", "data-region": region },
        el("div", { class: "region-name" }, region),
        cs.map((c) => clusterNode(c, byCluster.get(c.id) || []))));
    nodes.push(el("div", { class: `cloud cloud-${cloud}`, "data-cloud": cloud }, el("h3", {}, cloud), regionNodes));
  }
  const known = new Set(clusters.map((c) => c.id));
  const strays = gateways.filter((g) => !known.has(g.cluster));
  if (strays.length) {
    nodes.push(el("div", { class: "cloud" }, el("h3", {}, "gateways of clusters not in the catalog"),
      el("ul", { class: "gateways" }, strays.map(gatewayItem))));
  }
  put(root, nodes);
  if (gateways.length === 0) root.prepend(el("p", { class: "empty" }, "No gateways connected yet."));
}

function clusterNode(c, gws) {
  const state = c.gateways.connected > 0 ? "up" : c.gateways.total > 0 ? "down" : "none";
  return el("div", { class: `cluster state-${state}`, "data-cluster": c.id, "data-state": state },
    el("div", { class: "cluster-name" }, c.id, c.network ? el("span", { class: "muted small" }, ` ${c.network}`) : null),
    el("div", { class: "small" }, `gateways ${c.gateways.connected}/${c.gateways.total} connected`),
    gws.length ? el("ul", { class: "gateways" }, gws.map(gatewayItem)) : el("div", { class: "muted small" }, "no gateway yet"));
}

function gatewayItem(g) {
  const title = `version ${g.version}; acked catalog ${g.acked_version ?? "none"}; last seen ${ago(g.last_seen)}`
    + (g.nacks ? `; ${g.nacks} NACKs, last: ${g.last_nack}` : "");
  return el("li", { class: g.connected ? "ok" : "bad", "data-gateway": `${g.cluster}/${g.instance}`,
    "data-connected": g.connected, title },
  el("span", { class: "dot" }), g.instance, " ",
  el("span", { class: "muted small" }, g.connected ? `connected ${ago(g.connected_since)}` : `disconnected, seen ${ago(g.last_seen)}`),
  g.nacks ? el("span", { class: "badge warn" }, `${g.nacks} NACK`) : null);
}

// ---- latency heatmap ---------------------------------------------------------------------

// Green at 0 ms, through yellow, to red at 250 ms and beyond (log scale: 1, 10 and 100 ms
// should look different).
function heat(rtt) {
  const t = Math.min(1, Math.log10(1 + rtt) / Math.log10(251));
  return `hsl(${Math.round(120 * (1 - t))}, 70%, 78%)`;
}

function renderHeatmap(lat) {
  const root = $("heatmap");
  const cs = lat.clusters;
  if (cs.length === 0) {
    put(root, el("p", { class: "empty" }, "No clusters yet."));
    return;
  }
  const paths = new Map(lat.paths.map((p) => [`${p.from}\u0000${p.to}`, p]));
  const head = el("tr", {}, el("th", { class: "corner" }, "from \\ to"), cs.map((c) => el("th", { scope: "col" }, c)));
  const rows = cs.map((from) => el("tr", {}, el("th", { scope: "row" }, from), cs.map((to) => {
    if (from === to) return el("td", { class: "self", "data-from": from, "data-to": to }, "·");
    const p = paths.get(`${from}\u0000${to}`);
    if (!p) return el("td", { class: "unmeasured", "data-from": from, "data-to": to, title: "not measured" }, "");
    const rtt = p.rtt_ms;
    const tcp = p.transport === "tcp";
    const onTcp = tcp ? `; over TLS/TCP (UDP blocked)${p.transport_for_s ? ` for ${p.transport_for_s}s` : ""}` : "";
    const cell = el("td", {
      class: `measured state-${p.state}`, "data-from": from, "data-to": to, "data-state": p.state,
      "data-rtt": rtt ?? "", "data-transport": p.transport ?? "quic",
      title: `${from} → ${to}: ${p.state}, rtt ${ms(rtt)} ms, ranked ${ms(p.rank_rtt_ms)} ms${onTcp}; by ${p.by}, ${ago(p.reported_at)}`,
    }, rtt === null ? "" : ms(rtt), tcp ? el("span", { class: "cell-transport" }, "TCP") : null,
      p.state !== "healthy" ? el("span", { class: "cell-state" }, p.state) : null);
    if (rtt !== null && (p.state === "healthy" || p.state === "probing")) cell.style.background = heat(rtt);
    return cell;
  })));
  put(root, el("table", { class: "heatmap" }, el("thead", {}, head), el("tbody", {}, rows)));
  if (lat.paths.length === 0) root.append(el("p", { class: "empty" }, "No measurements yet: gateways report RTTs once connected to peers."));
}

// ---- services ----------------------------------------------------------------------------

function renderServices(services, routes) {
  const byService = new Map();
  for (const r of routes) {
    const k = `${r.namespace}/${r.name}`;
    if (!byService.has(k)) byService.set(k, []);
    byService.get(k).push(r);
  }
  const tbody = $("services").tBodies[0];
  $("services-count").textContent = `(${services.length})`;
  if (services.length === 0) {
    put(tbody, el("tr", {}, el("td", { colspan: 5, class: "empty" }, "No services in the catalog yet.")));
    return;
  }
  put(tbody, services.map((s) => {
    const key = `${s.namespace}/${s.name}`;
    const ready = s.clusters.reduce((n, c) => n + c.ready, 0);
    const total = s.clusters.reduce((n, c) => n + c.total, 0);
    const rs = byService.get(key) || [];
    return el("tr", { "data-service": key, class: ready === 0 ? "unhealthy" : null },
      el("td", { title: s.fqdn }, el("span", { class: "muted" }, `${s.namespace}/`), s.name,
        el("div", { class: "muted small" }, s.ports.map((p) => `${p.port}/${p.protocol}`).join(", "))),
      el("td", {}, s.clusters.map((c) => el("span", {
        class: `chip${c.ready === 0 ? " bad" : ""}${c.stale ? " stale" : ""}`, "data-cluster": c.cluster,
      }, `${c.cluster} ${c.ready}/${c.total}`))),
      el("td", { class: "num" }, `${ready}/${total}`),
      el("td", {}, rs.length === 0 ? el("span", { class: "muted" }, "no gateway sources") : rs.map((r) =>
        el("div", { class: "route", "data-from": r.from, "data-preferred": r.preferred ?? "" },
          el("span", { class: "muted" }, `${r.from} → `),
          r.preferred === null ? el("span", { class: "badge bad" }, "unreachable") : shares(r.shares),
          r.preferred === r.from && r.shares.length === 1 ? el("span", { class: "muted small" }, " (local)")
            : r.expected_rtt_ms !== null ? el("span", { class: "muted small" }, ` ~${ms(r.expected_rtt_ms)} ms`) : null))),
      el("td", {},
        s.has_conflicts ? el("span", { class: "badge warn", "data-flag": "conflict", title: "some cluster's export disagrees with the winning definition; see /api/v1/services/" + key }, "conflict") : null,
        s.stale ? el("span", { class: "badge stale", "data-flag": "stale", title: "some cluster is served from a failing source's last good data" }, "stale") : null));
  }));
}

// ---- traffic -----------------------------------------------------------------------------

/// A small SVG line of a 15-minute history (conn/s per 10 s), drawn from numbers only.
function sparkline(history) {
  const NS = "http://www.w3.org/2000/svg";
  const w = 180, h = 28;
  const max = Math.max(1e-9, ...history.map((p) => p.conn_per_s));
  const pts = history.map((p, i) => `${(i * w / Math.max(1, history.length - 1)).toFixed(1)},${(h - 2 - (p.conn_per_s / max) * (h - 4)).toFixed(1)}`);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", w); svg.setAttribute("height", h); svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `peak ${max.toFixed(2)} conn/s`);
  const line = document.createElementNS(NS, "polyline");
  line.setAttribute("points", pts.join(" "));
  svg.append(line);
  return svg;
}

const rate = (v) => (v >= 100 ? String(Math.round(v)) : v.toFixed(2));
const bytes = (v) => (v >= 1e6 ? `${(v / 1e6).toFixed(1)} MB` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} kB` : `${Math.round(v)} B`);
const pct = (r) => (r === null ? "—" : `${(r * 100).toFixed(1)}%`);
const p99 = (v) => (v === null ? "—" : `≤ ${v} ms`);

function renderTraffic(t) {
  const empty = (cols, text) => el("tr", {}, el("td", { colspan: cols, class: "empty" }, text));
  put($("traffic-services").tBodies[0], t.services.length === 0 ? empty(8, "No traffic reported yet.") : t.services.map((s) => {
    const f = s.traffic;
    return el("tr", { "data-service": s.service, "data-connections": f.connections },
      el("td", {}, s.service),
      el("td", { class: "num", "data-field": "conn_per_s_1m" }, rate(f.conn_per_s_1m)),
      el("td", { class: `num${f.success_ratio !== null && f.success_ratio < 0.99 ? " error-text" : ""}`, "data-field": "success_ratio" }, pct(f.success_ratio)),
      el("td", { class: "num", "data-field": "p99_open_ms" }, p99(f.p99_open_ms)),
      el("td", { class: "num", "data-field": "bytes_per_s_1m" }, bytes(f.bytes_per_s_1m)),
      el("td", { class: "num", "data-field": "connections" }, f.connections),
      el("td", { class: "num", "data-field": "retried" }, f.retried),
      el("td", {}, sparkline(f.history)));
  }));
  put($("traffic-paths").tBodies[0], t.paths.length === 0 ? empty(7, "No traffic reported yet.") : t.paths.map((p) => {
    const f = p.traffic;
    return el("tr", { "data-path": `${p.from}>${p.to}`, "data-transport": p.transport },
      el("td", {}, `${p.from} → ${p.to}`),
      el("td", {}, p.transport),
      el("td", { class: "num", "data-field": "conn_per_s_1m" }, rate(f.conn_per_s_1m)),
      el("td", { class: "num", "data-field": "p99_open_ms" }, p99(f.p99_open_ms)),
      el("td", { class: "num", "data-field": "bytes_per_s_1m" }, bytes(f.bytes_per_s_1m)),
      el("td", { class: "num", "data-field": "connections" }, f.connections),
      el("td", {}, sparkline(f.history)));
  }));
}

function renderProofs(p) {
  $("proofs-count").textContent = p.proofs.length === 0 ? "" : `(${p.failing} failing of ${p.proofs.length})`;
  const tbody = $("proofs").tBodies[0];
  if (p.proofs.length === 0) {
    put(tbody, el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No proofs reported yet (gateways prove every remote service port every 30 s).")));
    return;
  }
  put(tbody, p.proofs.map((f) =>
    el("tr", { "data-proof": `${f.service}:${f.port}:${f.from}>${f.to}`, "data-ok": f.ok ? "true" : "false", class: f.ok ? null : "unhealthy" },
      el("td", {}, `${f.service}:${f.port}`),
      el("td", {}, `${f.from} → ${f.to}`),
      el("td", {}, el("span", { class: `badge ${f.ok ? "ok" : "bad"}` }, f.ok ? "✓ reachable" : "✗ failed")),
      el("td", {}, ago(f.at)),
      el("td", { class: "num" }, f.took_ms === null ? "—" : `${ms(f.took_ms)} ms`),
      el("td", { class: "error-text" }, f.error ?? ""))));
}

// ---- sources -----------------------------------------------------------------------------

function renderSources(sources) {
  const tbody = $("sources").tBodies[0];
  const ids = Object.keys(sources).sort();
  if (ids.length === 0) {
    put(tbody, el("tr", {}, el("td", { colspan: 7, class: "empty" }, "No catalog sources configured.")));
    return;
  }
  put(tbody, ids.map((id) => {
    const s = sources[id];
    const failing = s.stale_since !== null || s.consecutive_failures > 0;
    const state = s.last_success === null && !failing ? "starting" : failing ? "failing" : "ok";
    return el("tr", { "data-source": id, "data-state": state },
      el("td", {}, id), el("td", {}, s.kind),
      el("td", {}, el("span", { class: `badge ${state === "ok" ? "ok" : state === "failing" ? "bad" : ""}` }, state),
        s.stale_since !== null ? el("span", { class: "muted small" }, ` stale since ${ago(s.stale_since)}`) : null),
      el("td", {}, ago(s.last_success)),
      el("td", { class: "num" }, `${s.consecutive_failures} (${s.total_failures} total)`),
      el("td", { class: "num" }, s.services),
      el("td", { class: "error-text" }, s.last_error ? `${s.last_error_kind ?? ""}: ${s.last_error}` : ""));
  }));
}

// ---- federator replicas ------------------------------------------------------------------

function renderFederators(fed, status) {
  const tbody = $("federators").tBodies[0];
  put(tbody, fed.federators.map((f) =>
    el("tr", { "data-replica": f.name, "data-role": f.role },
      el("td", {}, f.name, f.this ? el("span", { class: "muted small" }, " (this page)") : null),
      el("td", {}, el("span", { class: `badge ${f.role === "leader" ? "ok" : f.role === "degraded" ? "bad" : ""}` }, f.role)),
      el("td", { class: "num" }, `${f.catalog_version} (for ${ago(f.version_since)})`),
      el("td", {}, ago(f.role_since)),
      el("td", { class: "num" }, f.gateways))));
  $("store-state").textContent = `store: ${fed.store.backend}, ${fed.store.state}`;
  $("store-state").dataset.state = fed.store.state;
  put($("problems"), status.problems.map((p) => el("li", {}, p)));
  document.body.dataset.state = status.state;
}

// ---- what-if -----------------------------------------------------------------------------

function renderWhatifChoices(ids) {
  const box = $("whatif-clusters");
  const have = [...box.querySelectorAll("input")].map((i) => i.value);
  if (have.join(",") === ids.join(",")) return; // keep the operator's ticks
  const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  put(box, ids.map((id) => el("label", { class: "choice" },
    el("input", { type: "checkbox", value: id, "data-whatif": id, checked: checked.has(id) }), id)));
}

async function runWhatif(ev) {
  ev.preventDefault();
  const down = [...$("whatif-clusters").querySelectorAll("input:checked")].map((i) => i.value);
  const out = $("whatif-result");
  if (down.length === 0) {
    put(out, el("p", { class: "empty" }, "Tick one or more clusters first."));
    return;
  }
  put(out, el("p", { class: "muted" }, "computing…"));
  let w;
  try {
    w = await api(`whatif?down=${down.map(encodeURIComponent).join(",")}`);
  } catch (e) {
    put(out, el("p", { class: "error-text" }, e.message));
    return;
  }
  const all = $("whatif-all").checked;
  const rows = w.routes.filter((r) => all || r.changed);
  const s = w.summary;
  put(out,
    el("p", { id: "whatif-summary" }, `If ${w.down.join(", ")} went down: ${s.routes_changed} of ${s.routes} routes change; `
      + `services affected: ${s.services_affected}; left unreachable from some cluster: ${s.services_unreachable}.`),
    rows.length === 0 ? el("p", { class: "empty" }, "No route changes.") : el("table", {},
      el("thead", {}, el("tr", {}, ["Service", "From", "Before", "After", "RTT before → after"].map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", {
        "data-service": `${r.namespace}/${r.name}`, "data-from": r.from, class: r.after.unreachable ? "unhealthy" : r.changed ? "changed" : null,
      },
      el("td", {}, `${r.namespace}/${r.name}`), el("td", {}, r.from),
      el("td", {}, shares(r.before.shares)),
      el("td", {}, r.after.unreachable ? el("span", { class: "badge bad" }, "unreachable") : shares(r.after.shares)),
      el("td", { class: "num" }, `${ms(r.before.expected_rtt_ms)} → ${ms(r.after.expected_rtt_ms)}`))))));
}

// ---- events ------------------------------------------------------------------------------

const seen = new Set();

function addEvent(e) {
  if (seen.has(e.seq)) return;
  seen.add(e.seq);
  const list = $("events");
  list.querySelector(".empty")?.remove();
  const item = el("li", { "data-seq": e.seq, "data-kind": e.kind, class: `kind-${e.kind}` },
    el("time", { datetime: new Date(e.at).toISOString(), title: new Date(e.at).toLocaleString() }, new Date(e.at).toLocaleTimeString()),
    el("span", { class: "badge" }, e.kind), el("span", { class: "msg" }, e.message));
  // Newest first: insert before the first item with a smaller seq (replays may arrive late).
  const after = [...list.children].find((li) => Number(li.dataset.seq) < e.seq);
  list.insertBefore(item, after || null);
  while (list.children.length > MAX_EVENTS) {
    seen.delete(Number(list.lastElementChild.dataset.seq));
    list.lastElementChild.remove();
  }
}

function startStream() {
  const state = $("stream-state");
  const es = new EventSource("/api/v1/events/stream");
  es.onopen = () => { state.textContent = "live"; };
  es.onmessage = (m) => {
    let e;
    try { e = JSON.parse(m.data); } catch { return; }
    addEvent(e);
    soon(); // a catalog, gateway or source change: refresh the views now rather than at the next poll
  };
  es.addEventListener("lagged", () => { loadEvents(); soon(); });
  es.onerror = () => { state.textContent = "reconnecting…"; };
}

async function loadEvents() {
  try {
    const { events } = await api("events?limit=100");
    events.forEach(addEvent);
    if ($("events").children.length === 0) put($("events"), el("li", { class: "empty" }, "No events yet."));
  } catch (e) {
    banner(e.message);
  }
}

// ---- polling -----------------------------------------------------------------------------

let timer = null;
let running = false;
let again = false;

async function refresh() {
  if (running) {
    again = true; // something changed mid-fetch: fetch once more when this one ends
    return;
  }
  running = true;
  again = false;
  clearTimeout(timer);
  try {
    const [cl, gw, sv, lat, src, fed, st, tr, pr] = await Promise.all([
      api("clusters"), api("gateways"), api("services"), api("latency"), api("sources"), api("federators"), api("status"),
      api("traffic"), api("proofs"),
    ]);
    banner(null);
    renderTopology(cl.clusters, gw.gateways);
    renderHeatmap(lat);
    renderServices(sv.services, lat.routes);
    renderTraffic(tr);
    renderProofs(pr);
    renderSources(src.sources);
    renderFederators(fed, st);
    renderWhatifChoices([...new Set([...cl.clusters.map((c) => c.id), ...lat.clusters])].sort());
    const up = gw.gateways.filter((g) => g.connected).length;
    $("summary").textContent = `${st.state} · catalog v${sv.catalog_version} · ${cl.clusters.length} clusters · `
      + `${up}/${gw.gateways.length} gateways connected · ${sv.services.length} services`;
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.catalogVersion = sv.catalog_version;
  } catch (e) {
    banner(e.message);
  } finally {
    running = false;
    timer = setTimeout(refresh, again ? 0 : POLL_MS);
  }
}

let soonTimer = null;
function soon() {
  clearTimeout(soonTimer);
  soonTimer = setTimeout(refresh, 250);
}

$("whatif-form").addEventListener("submit", runWhatif);
refresh();
loadEvents();
startStream();
