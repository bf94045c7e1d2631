// The audit log: every admin action, newest first, optionally for one tenant.

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin } from "../api.js";
import { Empty, ErrorBox, Loading, fmtTime, html, useAction, useLoad } from "../ui.js";

export function Audit() {
  const tenants = useLoad(() => admin.tenants(), []);
  const [tenant, setTenant] = useState("");
  const first = useLoad(() => admin.audit({ tenant, limit: 50 }), [tenant]);
  const [items, setItems] = useState(null);
  const [next, setNext] = useState(null);
  const more = useAction();
  useEffect(() => {
    if (first.data) {
      setItems(first.data.items);
      setNext(first.data.next_cursor);
    }
  }, [first.data]);
  const loadMore = async () => {
    const page = await more.run(() => admin.audit({ tenant, cursor: next, limit: 50 }));
    if (page) {
      setItems((xs) => [...xs, ...page.items]);
      setNext(page.next_cursor);
    }
  };
  return html`<h1>Audit log</h1>
    <div class="row wrap toolbar">
      <div class="field">
        <label for="audit-tenant">Tenant</label>
        <select id="audit-tenant" value=${tenant} onChange=${(e) => setTenant(e.target.value)}>
          <option value="">All tenants and platform actions</option>
          ${tenants.data && tenants.data.items.map((t) => html`<option key=${t.slug} value=${t.slug}>${t.slug}</option>`)}
        </select>
      </div>
    </div>
    ${first.loading && html`<${Loading} what="the audit log" />`}
    <${ErrorBox} error=${first.error} what="load the audit log" retry=${first.reload} />
    ${items && items.length === 0 && !first.loading && html`<${Empty}>Nothing recorded${tenant ? ` for ${tenant}` : ""} yet: admin actions (tenants, keys, users, secrets, rules) appear here.</${Empty}>`}
    ${items && items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Admin actions, newest first</caption>
      <thead><tr><th scope="col">When</th><th scope="col">Who</th><th scope="col">Action</th><th scope="col">Tenant</th><th scope="col">Target</th><th scope="col">Detail</th></tr></thead>
      <tbody>${items.map((a) => html`<tr key=${a.id} data-testid="audit-row">
        <td>${fmtTime(a.at)}</td><td>${a.actor}</td><th scope="row"><code>${a.action}</code></th><td>${a.tenant || ""}</td>
        <td>${a.target || ""}</td><td class="code preview">${Object.keys(a.detail || {}).length ? JSON.stringify(a.detail) : ""}</td></tr>`)}</tbody>
    </table></div>`}
    <${ErrorBox} error=${more.error} what="load more" />
    ${next && html`<button type="button" disabled=${more.busy} onClick=${loadMore}>Load older entries</button>`}`;
}
