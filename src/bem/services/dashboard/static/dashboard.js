"use strict";
// Renders GET overview (same origin) every few seconds. ?refresh=<seconds> changes the
// period (minimum 0.5); ?api_key=<key> is passed on when the gateway requires keys.
(function () {
  const params = new URLSearchParams(location.search);
  const period = Math.max(0.5, Number(params.get("refresh")) || 2) * 1000;
  const key = params.get("api_key");
  const source = "overview" + (key ? "?api_key=" + encodeURIComponent(key) : "");
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  const pill = (status) => el("span", {class: "pill " + status, "data-status": status}, status);
  const num = (v, digits) => (v === null || v === undefined) ? "—" : Number(v).toFixed(digits);
  const pct = (v) => (v === null || v === undefined) ? "—" : (100 * v).toFixed(1) + " %";

  function bytes(n) {
    if (!n) return "0 B";
    const units = ["B", "KiB", "MiB", "GiB"];
    const i = Math.min(units.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
    return (n / Math.pow(1024, i)).toFixed(i ? 1 : 0) + " " + units[i];
  }

  function duration(s) {
    if (s === null || s === undefined) return "—";
    if (s < 120) return Math.round(s) + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return (s / 3600).toFixed(1) + " h";
  }

  function serviceRows(replica) {
    const figures = (replica.metrics || {}).services || {};
    return Object.entries(replica.services).sort().map(([name, svc]) => {
      const f = figures[name] || {};
      return el("tr", {"data-service": name},
        el("td", {class: "name"}, name), el("td", {}, pill(svc.status)),
        el("td", {}, num(f.requests_per_s, 2)), el("td", {}, num(f.latency_p95_ms, 1)),
        el("td", {}, num(f.latency_mean_ms, 1)), el("td", {}, num(f.errors_per_s, 2)));
    });
  }

  // p95 and worst of the loop's timer lateness in the window: what every request waited
  const lag = (l) => (!l || l.p95_ms === null) ? "—" :
    "p95 " + num(l.p95_ms, 1) + " ms, max ≤ " + num(l.max_ms, 0) + " ms";

  function figures(m) {
    if (!m) return null;
    const item = (label, value) => el("span", {}, label + " ", el("b", {}, value));
    const redis = m.redis_up === undefined ? "—" : (m.redis_up ? "up" : "down");
    return el("div", {class: "figures"},
      item("total", num(m.total.requests_per_s, 2) + " req/s"),
      item("p95", num(m.total.latency_p95_ms, 1) + " ms"),
      item("pool", m.pool.workers ? m.pool.workers + " workers, " + m.pool.queue +
           " queued, " + num(m.pool.tasks_per_s, 2) + " tasks/s" : "none (inline)"),
      item("L1 cache hit ratio", pct(m.cache.l1_hit_ratio) + " (" + bytes(m.cache.l1_bytes) +
           ")"),
      item("Redis cache hit ratio", pct(m.cache.redis_hit_ratio)),
      item("calls", num(m.calls_per_s.inprocess, 2) + " in-process/s, " +
           num(m.calls_per_s.http, 2) + " http/s"),
      item("event-loop lag", lag(m.loop_lag)),
      item("Redis", redis), item("WebSockets", m.ws_connections),
      item("window", num(m.window_s, 0) + " s"));
  }

  function replicaView(r) {
    const head = el("div", {class: "replica-head"}, pill(r.status),
      el("code", {}, r.instance || "(no answer)"), el("span", {}, r.url),
      r.pid ? el("span", {}, "pid " + r.pid) : null,
      el("span", {}, "up " + duration(r.uptime_s)));
    const table = el("table", {},
      el("thead", {}, el("tr", {}, ["service", "status", "req/s", "p95 ms", "mean ms", "5xx/s"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, serviceRows(r)));
    return el("div", {class: "replica", "data-instance": r.instance || ""}, head,
      r.error ? el("p", {class: "error"}, r.error) : null, table, figures(r.metrics));
  }

  function clusterView(name, c) {
    return el("article", {class: "cluster " + c.status + "-edge", "data-cluster": name,
                          "data-status": c.status},
      el("h2", {}, name, pill(c.status),
         el("span", {class: "meta"}, c.replicas.length + " replica" +
            (c.replicas.length === 1 ? "" : "s"))),
      c.missing.length ? el("p", {class: "missing"},
        "no live replica serves: " + c.missing.join(", ")) : null,
      c.replicas.map(replicaView));
  }

  // Requests in an old platform's format (bem_legacy_requests_total), summed over replicas:
  // when the per-minute figures stay at zero, no old client is left.
  function legacyView(report) {
    const rows = new Map();
    for (const c of Object.values(report.clusters)) {
      for (const r of c.replicas) {
        for (const l of ((r.metrics || {}).legacy || [])) {
          const key = l.service + " " + l.operation;
          const row = rows.get(key) || {service: l.service, operation: l.operation, total: 0,
                                        per_min: 0};
          row.total += l.total;
          row.per_min += l.per_min;
          rows.set(key, row);
        }
      }
    }
    const title = el("h2", {}, "Old-platform clients");
    if (!rows.size) {
      return [title, el("p", {class: "meta", "data-legacy": "none"},
        "No request in an old platform's format since the clusters started.")];
    }
    return [title, el("table", {},
      el("thead", {}, el("tr", {}, ["service", "old operation", "requests", "per min"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, [...rows.values()].sort((a, b) => a.service.localeCompare(b.service) ||
          a.operation.localeCompare(b.operation)).map((row) =>
        el("tr", {"data-legacy": row.service + "/" + row.operation},
          el("td", {class: "name"}, row.service), el("td", {class: "name"}, row.operation),
          el("td", {}, num(row.total, 0)), el("td", {}, num(row.per_min, 1))))))];
  }

  function render(report) {
    const overall = $("overall");
    overall.className = "pill " + report.status;
    overall.dataset.status = report.status;
    overall.textContent = report.status;
    $("meta").textContent = "source: " + report.source + " · checked " +
      new Date(report.checked_at * 1000).toLocaleTimeString() + " · every " +
      period / 1000 + " s";
    $("services").replaceChildren(...Object.entries(report.services).map(([name, s]) =>
      el("div", {class: "service " + s.status + "-edge", "data-service": name},
        el("b", {}, name), pill(s.status), " " + s.healthy + "/" + s.replicas + " healthy")));
    $("clusters").replaceChildren(...Object.entries(report.clusters).map(
      ([name, c]) => clusterView(name, c)));
    $("legacy").replaceChildren(...legacyView(report));
    document.title = "[" + report.status.toUpperCase() + "] BEM platform health";
  }

  async function refresh() {
    const banner = $("banner");
    try {
      const response = await fetch(source, {cache: "no-store"});
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      banner.hidden = true;
    } catch (err) {
      banner.textContent = "The dashboard does not answer (" + err.message +
        "); showing the last data received.";
      banner.hidden = false;
      document.querySelectorAll(".cluster").forEach((c) => c.classList.add("stale"));
    } finally {
      setTimeout(refresh, period);
    }
  }

  refresh();
})();
