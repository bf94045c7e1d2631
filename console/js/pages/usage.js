// Metered use of a tenant per UTC day or per UTC hour: requests and errors, document
// writes, function invocations and CPU time, realtime connections, as charts (uPlot,
// loaded on first use) and as a table for screen readers.

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
  { key: "errors", label: "Errors (4xx and 5xx)", color: "#b42318" },
  { key: "doc_writes", label: "Document writes", color: "#1a7f37" },
  { key: "invocations", label: "Function invocations", color: "#8250df" },
  { key: "cpu_ms", label: "Function CPU (ms)", color: "#b35900" },
  { key: "realtime_connections", label: "Realtime connections opened", color: "#0a7e8c" },
  { key: "realtime_peak", label: "Realtime connections open at once (peak)", color: "#57606a" },
];
const MEASURES = ["requests", "errors", "doc_writes", "invocations", "cpu_us", "realtime_connections", "realtime_peak"];

// Per day or per hour: how buckets are named by the API, shown, and stepped through.
const PER = {
  day: {
    param: "days", key: "day", spans: [[7, "Last 7 days"], [30, "Last 30 days"], [90, "Last 90 days"]], start: 30,
    step: 86_400_000, label: (ms) => new Date(ms).toISOString().slice(0, 10), head: "Day (UTC)", word: "day",
  },
  hour: {
    param: "hours", key: "hour", spans: [[24, "Last 24 hours"], [48, "Last 48 hours"], [168, "Last 7 days"], [336, "Last 14 days"]], start: 48,
    step: 3_600_000, label: (ms) => `${new Date(ms).toISOString().slice(0, 13)}:00:00Z`, head: "Hour (UTC)", word: "hour",
  },
};

function Chart({ buckets, series, per }) {
  const box = useRef(null);
  const [error, setError] = useState(null);
  useEffect(() => {
    let plot = null;
    let gone = false;
    loadUplot().then(
      (uPlot) => {
        if (gone || !box.current) return;
        const xs = buckets.map((b) => b.at / 1000);
        const ys = buckets.map((b) => b[series.key]);
        const width = Math.max(280, Math.min(box.current.clientWidth || 560, 560));
        plot = new uPlot(
          {
            width,
            height: 180,
            legend: { show: false },
            scales: { x: { time: true } },
            axes: [{}, { size: 60 }],
            series: [{}, { label: series.label, stroke: series.color, fill: `${series.color}22`, width: 2, points: { show: buckets.length < 40 } }],
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
  }, [buckets, series]);
  return html`<figure class="chart card" aria-label=${`${series.label} per ${per.word}`}>
    <figcaption>${series.label} per ${per.word}</figcaption>
    <div ref=${box} class="plot" data-testid=${`chart-${series.key}`} aria-hidden="true"></div>
    <${ErrorBox} error=${error} what="draw the chart" />
  </figure>`;
}

/** One entry per UTC day or hour of the span, oldest first: the API lists only those with use. */
function everyBucket(listed, per, span) {
  const byLabel = new Map(listed.map((b) => [b[per.key], b]));
  const now = Date.now();
  const current = now - (now % per.step);
  const out = [];
  for (let i = span - 1; i >= 0; i--) {
    const at = current - i * per.step;
    const b = byLabel.get(per.label(at)) || {};
    const row = { at, label: per.label(at) };
    for (const m of MEASURES) row[m] = b[m] || 0;
    row.cpu_ms = Math.round(row.cpu_us / 1000);
    out.push(row);
  }
  return out;
}

const used = (c) => c.requests || c.doc_writes || c.invocations || c.realtime_connections || c.realtime_peak;

export function Usage({ slug }) {
  const [granularity, setGranularity] = useState("day");
  const [spans, setSpans] = useState({ day: PER.day.start, hour: PER.hour.start });
  const per = PER[granularity];
  const span = spans[granularity];
  const report = useLoad(() => admin.usage(slug, { granularity, [per.param]: span }), [slug, granularity, span]);
  // A report still loading is the previous granularity's: not drawn against this one's.
  const data = report.data && report.data.granularity === granularity ? report.data : null;
  const buckets = data ? everyBucket(data[`${granularity}s`] || [], per, span) : null;
  const total = data && data.total;
  const idle = total && !used(total);
  return html`<h1>Usage <small class="muted">of ${slug}</small></h1>
    <div class="row wrap toolbar">
      <fieldset class="segmented" data-testid="usage-per">
        <legend>Per</legend>
        ${Object.keys(PER).map((g) => html`<label class="check" key=${g}>
          <input type="radio" name="usage-per" value=${g} checked=${granularity === g} onChange=${() => setGranularity(g)} />
          ${g === "day" ? "Day" : "Hour"}</label>`)}
      </fieldset>
      <div class="field">
        <label for="usage-span">Period</label>
        <select id="usage-span" value=${span} onChange=${(e) => setSpans({ ...spans, [granularity]: Number(e.target.value) })}>
          ${per.spans.map(([n, text]) => html`<option key=${n} value=${n}>${text}</option>`)}
        </select>
      </div>
    </div>
    ${report.loading && !data && html`<${Loading} what="usage" />`}
    <${ErrorBox} error=${report.error} what="load the usage" retry=${report.reload} />
    ${total &&
    html`<dl class="facts" data-testid="usage-total">
      <div><dt>Requests</dt><dd>${fmtNumber(total.requests)}</dd></div>
      <div><dt>Errors</dt><dd>${fmtNumber(total.errors)}</dd></div>
      <div><dt>Document writes</dt><dd>${fmtNumber(total.doc_writes)}</dd></div>
      <div><dt>Invocations</dt><dd>${fmtNumber(total.invocations)}</dd></div>
      <div><dt>Function CPU</dt><dd>${fmtNumber(Math.round(total.cpu_us / 1000))} ms</dd></div>
      <div><dt>Realtime connections</dt><dd>${fmtNumber(total.realtime_connections)}</dd></div>
      <div><dt>Most open at once</dt><dd>${fmtNumber(total.realtime_peak)}</dd></div>
    </dl>`}
    ${idle && html`<${Empty}>No use recorded in this period: requests to the tenant's API, writes, function calls and realtime connections are counted here (per UTC ${per.word}).</${Empty}>`}
    ${buckets && !idle &&
    html`<div class="charts">${SERIES.map((s) => html`<${Chart} key=${s.key + granularity + span} buckets=${buckets} series=${s} per=${per} />`)}</div>
      <details><summary>The same as a table</summary>
        <div class="scroll"><table>
          <caption class="sr-only">Use per ${per.word} (${per.word}s without use left out)</caption>
          <thead><tr><th scope="col">${per.head}</th>${SERIES.map((s) => html`<th scope="col" class="num">${s.label}</th>`)}</tr></thead>
          <tbody>${buckets.filter(used).map((b) => html`<tr key=${b.label}><th scope="row">${b.label}</th>${SERIES.map((s) => html`<td class="num">${fmtNumber(b[s.key])}</td>`)}</tr>`)}</tbody>
        </table></div>
      </details>`}`;
}
