// Overview: the server (version, backend, uptime) and every tenant with its documents,
// this hour's requests, errors and realtime connections (the usage API's current UTC
// hour) and today's writes and invocations (its current UTC day).

import { admin, session } from "../api.js";
import { Empty, ErrorBox, Loading, fmtNumber, html, useLoad } from "../ui.js";

function uptime(s) {
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return d ? `${d} d ${h} h` : h ? `${h} h ${m} min` : `${m} min ${s % 60} s`;
}

async function tenantRows() {
  const { items } = await admin.tenants();
  return Promise.all(
    items.map(async (tenant) => {
      const [cols, day, hour] = await Promise.allSettled([
        admin.collections(tenant.slug),
        admin.usage(tenant.slug, { days: 1 }),
        admin.usage(tenant.slug, { granularity: "hour", hours: 1 }),
      ]);
      const documents = cols.status === "fulfilled" ? cols.value.items.reduce((n, c) => n + c.count, 0) : null;
      const today = day.status === "fulfilled" ? day.value.total : null;
      const thisHour = hour.status === "fulfilled" ? hour.value.total : null;
      return { tenant, documents, today, thisHour };
    }),
  );
}

export function Overview() {
  const server = useLoad(() => admin.server(), []);
  const tenants = useLoad(tenantRows, []);
  return html`<h1>Overview</h1>
    <section aria-labelledby="server-h">
      <h2 id="server-h">Server</h2>
      ${server.loading && !server.data && html`<${Loading} what="the server's details" />`}
      <${ErrorBox} error=${server.error} what="load the server's details" retry=${server.reload} />
      ${server.data &&
      html`<dl class="facts" data-testid="server">
        <div><dt>Version</dt><dd>${server.data.version}</dd></div>
        <div><dt>Backend</dt><dd>${server.data.backend === "postgres" ? "PostgreSQL" : "SQLite"}</dd></div>
        <div><dt>Uptime</dt><dd>${uptime(server.data.uptime_seconds)}</dd></div>
      </dl>`}
    </section>
    <section aria-labelledby="tenants-h">
      <h2 id="tenants-h">Tenants</h2>
      ${tenants.loading && !tenants.data && html`<${Loading} what="tenants" />`}
      <${ErrorBox} error=${tenants.error} what="load the tenants" retry=${tenants.reload} />
      ${tenants.data && tenants.data.length === 0 &&
      html`<${Empty}>${session.can("platform")
        ? html`No tenants yet. <a href="/_/tenants">Create the first tenant</a> to hold an app's users and data.`
        : "No tenants for you yet: an owner or admin makes them and assigns them."}</${Empty}>`}
      ${tenants.data && tenants.data.length > 0 &&
      html`<div class="scroll"><table>
        <caption class="sr-only">Tenants, this hour's use (UTC hour) and today's (UTC day)</caption>
        <thead><tr><th scope="col">Tenant</th><th scope="col">Status</th><th scope="col" class="num">Documents</th>
          <th scope="col" class="num">Requests this hour</th><th scope="col" class="num">Errors this hour</th>
          <th scope="col" class="num">Realtime connections this hour (most at once)</th>
          <th scope="col" class="num">Writes today</th><th scope="col" class="num">Invocations today</th></tr></thead>
        <tbody>${tenants.data.map(({ tenant, documents, today, thisHour }) => html`<tr key=${tenant.slug}>
          <th scope="row"><a href=${`/_/tenants/${encodeURIComponent(tenant.slug)}/data`}>${tenant.name}</a> <small class="muted">${tenant.slug}</small></th>
          <td>${tenant.suspended ? html`<span class="badge warn">suspended</span>` : "active"}</td>
          <td class="num">${fmtNumber(documents)}</td>
          <td class="num" data-testid="hour-requests">${fmtNumber(thisHour && (thisHour.requests ?? 0))}</td>
          <td class="num" data-testid="hour-errors">${fmtNumber(thisHour && (thisHour.errors ?? 0))}</td>
          <td class="num">${fmtNumber(thisHour && (thisHour.realtime_connections ?? 0))} (${fmtNumber(thisHour && (thisHour.realtime_peak ?? 0))})</td>
          <td class="num">${fmtNumber(today && (today.doc_writes ?? 0))}</td>
          <td class="num">${fmtNumber(today && (today.invocations ?? 0))}</td>
        </tr>`)}</tbody>
      </table></div>`}
    </section>`;
}
