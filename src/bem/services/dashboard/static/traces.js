"use strict";
// Draws GET traces/slowest (same origin) as one SVG waterfall per trace, every few seconds.
// ?refresh=<seconds> changes the period (minimum 0.5); ?api_key=<key> is passed on.
(function () {
  const params = new URLSearchParams(location.search);
  const period = Math.max(0.5, Number(params.get("refresh")) || 5) * 1000;
  const key = params.get("api_key");
  const source = "traces/slowest" + (key ? "?api_key=" + encodeURIComponent(key) : "");
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const ROW = 20, LABEL = 360, WIDTH = 900, PALETTE = 8;
  const services = [];  // a stable colour per service, in order of first sight

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

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function colour(service) {
    if (!services.includes(service)) services.push(service);
    return "c" + (services.indexOf(service) % PALETTE);
  }

  const ms = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " ms";

  function waterfall(trace) {
    const total = Math.max(trace.duration_ms, 0.001);
    const scale = (WIDTH - LABEL - 60) / total;
    const picture = svg("svg", {width: WIDTH, height: ROW * trace.spans.length + 4,
                                role: "img", "aria-label": trace.name + " waterfall"});
    trace.spans.forEach((span, i) => {
      const y = i * ROW + 2;
      const row = svg("g", {class: "span " + colour(span.service) + (span.error ? " error" : ""),
                            "data-span": span.name, "data-service": span.service,
                            "data-depth": span.depth});
      const attrs = Object.entries(span.attributes).map(([k, v]) => k + " = " + v).join("\n");
      row.append(svg("title", {}, span.service + " · " + span.name + " · " +
                     ms(span.duration_ms) + " at +" + ms(span.offset_ms) + "\n" +
                     "cluster " + span.cluster + ", pid " + span.pid + "\n" + attrs));
      row.append(svg("text", {x: 4 + 12 * span.depth, y: y + 14, class: "label"},
                     span.name + "  ·  " + span.service));
      const width = Math.max(1, span.duration_ms * scale);
      const x = LABEL + span.offset_ms * scale;
      row.append(svg("rect", {x: x, y: y + 3, width: width, height: ROW - 6, rx: 2,
                              class: "bar"}));
      row.append(svg("text", {x: x + width + 4, y: y + 14, class: "time"},
                     ms(span.duration_ms)));
      picture.append(row);
    });
    return el("figure", {class: "trace", "data-trace": trace.trace_id},
      el("figcaption", {},
         el("b", {}, trace.name), " ", ms(trace.duration_ms), " · ", trace.spans.length,
         " spans · ", new Date(trace.started_at * 1000).toLocaleTimeString(),
         " · trace ", el("code", {}, trace.trace_id)),
      picture);
  }

  function render(data) {
    const state = $("state");
    state.textContent = data.enabled ? "tracing on" : "tracing off";
    state.className = "pill " + (data.enabled ? "pass" : "unknown");
    $("meta").textContent = data.enabled ? ("exporter " + data.exporter + " → " +
      data.endpoint + " · sampler " + data.sampler + " · " + data.processes +
      " processes") : "";
    const banner = $("banner");
    banner.hidden = data.enabled;
    banner.textContent = data.message || "";
    const main = $("traces");
    main.replaceChildren(...Object.entries(data.services).map(([service, traces]) =>
      el("section", {class: "service-traces", "data-service": service},
         el("h2", {}, service, el("span", {class: "meta"}, traces.length + " slowest")),
         traces.map(waterfall))));
    if (data.enabled && !Object.keys(data.services).length) {
      main.append(el("p", {class: "meta", "data-traces": "none"},
                     "No trace yet: the buffers are empty."));
    }
  }

  async function refresh() {
    try {
      const answer = await fetch(source, {cache: "no-store"});
      render(await answer.json());
    } catch (err) {
      const banner = $("banner");
      banner.hidden = false;
      banner.textContent = "cannot read traces/slowest: " + err;
    }
    setTimeout(refresh, period);
  }

  refresh();
})();
