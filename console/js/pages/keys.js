// Service keys (create: shown once, with a copy button; list; revoke) and secrets (names
// and times only: set, replace, delete) of a tenant.

import { useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { Empty, ErrorBox, Field, Loading, NewKey, fieldError, fmtTime, html, useAction, useLoad } from "../ui.js";

function Keys({ slug }) {
  const list = useLoad(() => admin.keys(slug), [slug]);
  const [name, setName] = useState("");
  const [made, setMade] = useState(null);
  const create = useAction();
  const revoke = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const k = await create.run(() => admin.createKey(slug, name));
    if (k) {
      setMade(k);
      setName("");
      list.reload();
    }
  };
  const active = list.data ? list.data.items.filter((k) => !k.revoked_at) : null;
  const write = session.can("write");
  return html`<section aria-labelledby="keys-h">
    <h2 id="keys-h">Service keys</h2>
    <p class="muted small">A service key acts as the tenant's service caller: every document, no rules. For servers and CI, never for browsers.</p>
    ${write && html`<form class="row wrap card" onSubmit=${submit}>
      <${Field} label="Key name" value=${name} onInput=${setName} required autocomplete="off" error=${fieldError(create.error, "name")} />
      <button type="submit" disabled=${create.busy}>Create key</button>
    </form>`}
    ${create.error && !create.error.fields && html`<${ErrorBox} error=${create.error} what="create the key" />`}
    ${made && html`<${NewKey} made=${made} onDone=${() => setMade(null)} />`}
    ${list.loading && !list.data && html`<${Loading} what="keys" />`}
    <${ErrorBox} error=${list.error} what="load the keys" retry=${list.reload} />
    <${ErrorBox} error=${revoke.error} what="revoke the key" />
    ${active && active.length === 0 && html`<${Empty}>No active keys.${write ? " Create one for a server or a CI job that needs the whole tenant." : ""}</${Empty}>`}
    ${active && active.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Active service keys</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Starts with</th><th scope="col">Created</th>${write && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${active.map((k) => html`<tr key=${k.id} data-testid="key-row">
        <th scope="row">${k.name}</th><td><code>${k.prefix}</code></td><td>${fmtTime(k.created_at)}</td>
        ${write && html`<td><button type="button" class="danger" disabled=${revoke.busy} aria-label=${`Revoke key ${k.name}`}
          onClick=${async () => { if ((await revoke.run(() => admin.revokeKey(slug, k.id))) !== undefined) list.reload(); }}>Revoke</button></td>`}
      </tr>`)}</tbody>
    </table></div>`}
  </section>`;
}

function Secrets({ slug }) {
  const list = useLoad(() => admin.secrets(slug), [slug]);
  const [name, setName] = useState("");
  const [value, setValue] = useState("");
  const put = useAction();
  const del = useAction();
  const submit = async (e) => {
    e.preventDefault();
    if ((await put.run(() => admin.putSecret(slug, name.trim(), value))) !== undefined) {
      setName("");
      setValue("");
      list.reload();
    }
  };
  const write = session.can("write");
  const nameError = put.error && put.error.status === 400 && !fieldError(put.error, "value") ? fieldError(put.error, "name") || put.error.message : null;
  return html`<section aria-labelledby="secrets-h">
    <h2 id="secrets-h">Secrets</h2>
    <p class="muted small">Functions read them as <code>ctx.env.NAME</code>. Values are stored encrypted and never shown again, here or anywhere.</p>
    ${write && html`<form class="card" onSubmit=${submit} aria-label="Set a secret">
      <div class="row wrap">
        <${Field} label="Name" value=${name} onInput=${setName} required autocomplete="off" spellcheck="false"
          hint="Capitals, digits and _, like STRIPE_KEY. An existing name is replaced." error=${nameError} />
        <${Field} id="secret-value" label="Value" type="password" value=${value} onInput=${setValue} required autocomplete="off" error=${fieldError(put.error, "value")} />
      </div>
      <button type="submit" disabled=${put.busy}>Set secret</button>
    </form>`}
    ${put.error && put.error.status !== 400 && html`<${ErrorBox} error=${put.error} what="set the secret" />`}
    ${list.loading && !list.data && html`<${Loading} what="secrets" />`}
    <${ErrorBox} error=${list.error} what="load the secrets" retry=${list.reload} />
    <${ErrorBox} error=${del.error} what="delete the secret" />
    ${list.data && list.data.items.length === 0 && html`<${Empty}>No secrets.${write ? " Set one above for your functions (an API key, a webhook secret)." : ""}</${Empty}>`}
    ${list.data && list.data.items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Secrets</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Updated</th>${write && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${list.data.items.map((s) => html`<tr key=${s.name} data-testid="secret-row">
        <th scope="row"><code>${s.name}</code></th><td>${fmtTime(s.updated_at)}</td>
        ${write && html`<td class="row wrap"><button type="button" onClick=${() => { setName(s.name); setValue(""); document.getElementById("secret-value")?.focus(); }}
          aria-label=${`Replace ${s.name}`}>Replace</button>
          <button type="button" class="danger" disabled=${del.busy} aria-label=${`Delete ${s.name}`}
          onClick=${async () => { if ((await del.run(() => admin.deleteSecret(slug, s.name))) !== undefined) list.reload(); }}>Delete</button></td>`}
      </tr>`)}</tbody>
    </table></div>`}
  </section>`;
}

export function KeysAndSecrets({ slug }) {
  return html`<h1>Keys and secrets <small class="muted">of ${slug}</small></h1>
    <${Keys} slug=${slug} />
    <${Secrets} slug=${slug} />`;
}
