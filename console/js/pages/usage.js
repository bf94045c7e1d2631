// Metered use of a tenant per UTC day: requests, document writes, function invocations
// and CPU time, as charts (uPlot, loaded on first use) and as a table for screen readers.

import { useEffect, useRef, useState } from "../../vendor/hooks.mjs";
import { admin } from "../api.js";
import { Empty, ErrorBox, Loading, fmtNumber, html, useLoad } from "../ui.js";

let loading = null;
/** uPlot, loaded once: a classic script and its stylesheet from /_/vendor/. */
function loadUplot() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const css = document.createElement("link");
      css.rel = "stylesheet";
      css.href = "/_/vendor/uplot.min.css";
      document.head.append(css);
      const s = document.createElement("script");
      s.src = "/_/vendor/uplot.iife.min.js";
      s.onload = () => resolve(window.uPlot);
      s.onerror = () => {
        loading = null;
        reject(new Error("the chart library did not load"));
      };
      document.head.append(s);
    });
  }
  return loading;
}

const SERIES = [
  { key: "requests", label: "Requests", color: "#0b5cad" },
  { key: "doc_writes", label: "Document writes", color: "#1a7f37" },
  { key: "invocations", label: "Function invocations", color: "#8250df" },
  { key: "cpu_ms", label: "Function CPU (ms)", color: "#b35900" },
];

function Chart({ days, series }) {
  const box = useRef(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let plot = null;
    let gone = false;
    loadUplot().then(
      (uPlot) => {
        if (gone || !box.current) return;
        const xs = days.map((d) => Date.parse(`${d.day}T00:00:00Z`) / 1000);
        const ys = days.map((d) => d[series.key]);
        const width = Math.max(280, Math.min(box.current.clientWidth || 560, 560));
        plot = new uPlot(
          {
            width,
            height: 180,
            legend: { show: false },
            scales: { x: { time: true } },
            axes: [{}, { size: 60 }],
            series: [{}, { label: series.label, stroke: series.color, fill: `${series.color}22`, width: 2, points: { show: days.length < 40 } }],
          },
          [xs, ys],
          box.current,
        );
      },
      (e) => setError(e),
    );
    return () => {
      gone = true;
      if (plot) plot.destroy();
    };
  }, [days, series]);
  return html`<figure class="chart card" aria-label=${`${series.label} per day`}>
    <figcaption>${series.label} per day</figcaption>
    <div ref=${box} class="plot" data-testid=${`chart-${series.key}`} aria-hidden="true"></div>
    <${ErrorBox} error=${error} what="draw the chart" />
  </figure>`;
}

/** One entry per UTC day of the span, oldest first: the API lists only days with use. */
function everyDay(listed, span) {
  const byDay = new Map(listed.map((d) => [d.day, d]));
  const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
  const out = [];
  for (let i = span - 1; i >= 0; i--) {
    const day = new Date(today - i * 86_400_000).toISOString().slice(0, 10);
    const d = byDay.get(day) || { day, requests: 0, doc_writes: 0, invocations: 0, cpu_us: 0 };
    out.push({ ...d, cpu_ms: Math.round((d.cpu_us || 0) / 1000) });
  }
  return out;
}

export function Usage({ slug }) {
  const [span, setSpan] = useState(30);
  const report = useLoad(() => admin.usage(slug, span), [slug, span]);
  const days = report.data ? everyDay(report.data.days, span) : null;
  const total = report.data && report.data.total;
  const idle = total && !total.requests && !total.doc_writes && !total.invocations;
  return html`<h1>Usage <small class="muted">of ${slug}</small></h1>
    <div class="row wrap toolbar">
      <div class="field">
        <label for="usage-span">Period</label>
        <select id="usage-span" value=${span} onChange=${(e) => setSpan(Number(e.target.value))}>
          <option value="7">Last 7 days</option><option value="30">Last 30 days</option><option value="90">Last 90 days</option>
        </select>
      </div>
    </div>
    ${report.loading && !report.data && html`<${Loading} what="usage" />`}
    <${ErrorBox} error=${report.error} what="load the usage" retry=${report.reload} />
    ${total &&
    html`<dl class="facts" data-testid="usage-total">
      <div><dt>Requests</dt><dd>${fmtNumber(total.requests)}</dd></div>
      <div><dt>Document writes</dt><dd>${fmtNumber(total.doc_writes)}</dd></div>
      <div><dt>Invocations</dt><dd>${fmtNumber(total.invocations)}</dd></div>
      <div><dt>Function CPU</dt><dd>${fmtNumber(Math.round(total.cpu_us / 1000))} ms</dd></div>
    </dl>`}
    ${idle && html`<${Empty}>No use recorded in this period: requests to the tenant's API, writes and function calls are counted here (per UTC day).</${Empty}>`}
    ${days && !idle &&
    html`<div class="charts">${SERIES.map((s) => html`<${Chart} key=${s.key + span} days=${days} series=${s} />`)}</div>
      <details><summary>The same as a table</summary>
        <div class="scroll"><table>
          <caption class="sr-only">Use per day (days without use left out)</caption>
          <thead><tr><th scope="col">Day (UTC)</th>${SERIES.map((s) => html`<th scope="col" class="num">${s.label}</th>`)}</tr></thead>
          <tbody>${days.filter((d) => d.requests || d.doc_writes || d.invocations).map((d) => html`<tr key=${d.day}><th scope="row">${d.day}</th>${SERIES.map((s) => html`<td class="num">${fmtNumber(d[s.key])}</td>`)}</tr>`)}</tbody>
        </table></div>
      </details>`}`;
}
