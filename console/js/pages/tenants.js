// Tenants: create (the slug checked as it is typed), rename, CORS origins,
// suspend/resume, delete (typing the slug to confirm).

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { ConfirmTyped, Empty, ErrorBox, Field, Loading, fieldError, fmtTime, html, useAction, useDebounced, useLoad } from "../ui.js";

// The server's rule (tenancy::validate_slug), checked here only to answer while typing;
// the server checks again.
const RESERVED = ["admin", "api", "www", "app"];
function slugProblem(slug) {
  if (!/^[a-z][a-z0-9-]{2,39}$/.test(slug)) return "3 to 40 characters: a lower-case letter, then lower-case letters, digits or '-'.";
  if (RESERVED.includes(slug)) return "This word is reserved.";
  return null;
}

/** "free", "taken", "invalid" or "checking", for the slug being typed. */
function useSlugStatus(slug, generation) {
  const settled = useDebounced(slug, 250);
  const [status, setStatus] = useState({ slug: "", state: "" });
  useEffect(() => {
    if (!settled) return setStatus({ slug: "", state: "" });
    const problem = slugProblem(settled);
    if (problem) return setStatus({ slug: settled, state: "invalid", message: problem });
    let live = true;
    setStatus({ slug: settled, state: "checking" });
    admin.tenant(settled).then(
      () => live && setStatus({ slug: settled, state: "taken", message: "A tenant with this slug exists." }),
      (e) => live && setStatus(e.status === 404 ? { slug: settled, state: "free" } : { slug: settled, state: "unknown", message: e.message }),
    );
    return () => (live = false);
  }, [settled, generation]);
  if (slug !== status.slug) return { state: slug ? "checking" : "" };
  return status;
}

function CreateTenant({ onCreated }) {
  const [slug, setSlug] = useState("");
  const [name, setName] = useState("");
  // Bumped by each creation, so the slug just taken is checked again.
  const [generation, setGeneration] = useState(0);
  const status = useSlugStatus(slug, generation);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const made = await run(() => admin.createTenant(slug, name || slug));
    if (made) {
      setSlug("");
      setName("");
      setGeneration((n) => n + 1);
      onCreated(made);
    }
  };
  const slugError =
    (status.state === "invalid" || status.state === "taken" ? status.message : null) ||
    fieldError(error, "slug") ||
    (error && error.code === "tenant_exists" ? "A tenant with this slug exists." : null);
  const hint = status.state === "checking" ? "Checking…" : status.state === "free" ? "Available." : "Names the tenant in every URL: /v1/t/<slug>/…";
  return html`<form class="card" onSubmit=${submit} aria-labelledby="create-h">
    <h2 id="create-h">Create a tenant</h2>
    <div class="row wrap">
      <${Field} label="Slug" value=${slug} onInput=${(v) => setSlug(v.trim())} hint=${hint} error=${slugError}
        autocomplete="off" spellcheck="false" required data-testid="new-slug" />
      <${Field} label="Name" value=${name} onInput=${setName} hint="Shown in the console; defaults to the slug." error=${fieldError(error, "name")} />
    </div>
    <button type="submit" disabled=${busy || status.state !== "free"}>${busy ? "Creating…" : "Create tenant"}</button>
    ${error && !error.fields && error.code !== "tenant_exists" && html`<${ErrorBox} error=${error} what="create the tenant" />`}
  </form>`;
}

function TenantRow({ tenant, onChanged, onDeleted }) {
  const [mode, setMode] = useState(null); // null | "rename" | "cors" | "delete"
  const [name, setName] = useState(tenant.name);
  const [origins, setOrigins] = useState(tenant.cors_origins.join("\n"));
  const action = useAction();
  const save = async (patch) => {
    const t = await action.run(() => admin.updateTenant(tenant.slug, patch));
    if (t) {
      setMode(null);
      onChanged(t);
    }
  };
  const toggle = async () => {
    const t = await action.run(() => (tenant.suspended ? admin.resume(tenant.slug) : admin.suspend(tenant.slug)));
    if (t) onChanged(t);
  };
  const open = (m) => {
    action.setError(null);
    setName(tenant.name);
    setOrigins(tenant.cors_origins.join("\n"));
    setMode(mode === m ? null : m);
  };
  const slugUrl = encodeURIComponent(tenant.slug);
  return html`<li class="tenant card" data-testid=${`tenant-${tenant.slug}`}>
    <div class="row wrap between">
      <div>
        <h3><span class="tenant-name">${tenant.name}</span> <small class="muted">${tenant.slug}</small>
          ${tenant.suspended && html` <span class="badge warn">suspended</span>`}</h3>
        <small class="muted">created ${fmtTime(tenant.created_at)}</small>
      </div>
      <div class="row wrap actions" role="group" aria-label=${`Actions for ${tenant.slug}`}>
        <a class="button" href=${`/_/tenants/${slugUrl}/users`}>Users</a>
        <a class="button" href=${`/_/tenants/${slugUrl}/data`}>Data</a>
        <a class="button" href=${`/_/tenants/${slugUrl}/rules`}>Rules</a>
        <a class="button" href=${`/_/tenants/${slugUrl}/keys`}>Keys</a>
        ${session.can("write") && html`<button type="button" aria-expanded=${mode === "rename"} onClick=${() => open("rename")}>Rename</button>
        <button type="button" aria-expanded=${mode === "cors"} onClick=${() => open("cors")}>CORS</button>`}
        ${session.can("platform") && html`<button type="button" disabled=${action.busy} onClick=${toggle}>${tenant.suspended ? "Resume" : "Suspend"}</button>
        <button type="button" class="danger" aria-expanded=${mode === "delete"} onClick=${() => open("delete")}>Delete</button>`}
      </div>
    </div>
    ${mode === "rename" &&
    html`<form onSubmit=${(e) => { e.preventDefault(); save({ name }); }}>
      <${Field} label="New name" value=${name} onInput=${setName} required error=${fieldError(action.error, "name")} />
      <button type="submit" disabled=${action.busy}>Save name</button> <button type="button" onClick=${() => setMode(null)}>Cancel</button>
    </form>`}
    ${mode === "cors" &&
    html`<form onSubmit=${(e) => { e.preventDefault(); save({ cors_origins: origins.split(/\s+/).filter(Boolean) }); }}>
      <${Field} type="textarea" rows="3" label="Allowed origins" value=${origins} onInput=${setOrigins}
        hint="One per line, like https://app.example.com, or * for any. Empty: browsers on other origins are refused."
        error=${fieldError(action.error, "cors_origins")} />
      <button type="submit" disabled=${action.busy}>Save origins</button> <button type="button" onClick=${() => setMode(null)}>Cancel</button>
    </form>`}
    ${mode === "delete" &&
    html`<${ConfirmTyped} word=${tenant.slug} action="Delete tenant" busy=${action.busy} error=${action.error}
      label=${html`This deletes <strong>${tenant.name}</strong> with all its users, documents, functions and secrets. It cannot be undone.`}
      onCancel=${() => setMode(null)}
      onConfirm=${async () => { if ((await action.run(() => admin.deleteTenant(tenant.slug))) !== undefined) onDeleted(tenant.slug); }} />`}
    ${mode !== "delete" && !(action.error && action.error.fields) && html`<${ErrorBox} error=${action.error} what="change the tenant" />`}
  </li>`;
}

export function Tenants() {
  const list = useLoad(() => admin.tenants(), []);
  const [items, setItems] = useState(null);
  useEffect(() => list.data && setItems(list.data.items), [list.data]);
  const replace = (t) => setItems((xs) => xs.map((x) => (x.slug === t.slug ? t : x)));
  // Only owners and admins make tenants; the others are told who does.
  const platform = session.can("platform");
  return html`<h1>Tenants</h1>
    ${!platform && html`<p class="muted">${session.role === "tenant_admin" ? "These are the tenants assigned to you." : "You can look, not change."}
      New tenants are made by an owner or an admin.</p>`}
    ${platform && html`<${CreateTenant} onCreated=${(t) => setItems((xs) => [...(xs || []), t].sort((a, b) => a.slug.localeCompare(b.slug)))} />`}
    <section aria-labelledby="list-h">
      <h2 id="list-h">${session.role === "tenant_admin" ? "Your tenants" : "All tenants"}</h2>
      ${list.loading && !items && html`<${Loading} what="tenants" />`}
      <${ErrorBox} error=${list.error} what="load the tenants" retry=${list.reload} />
      ${items && items.length === 0 && html`<${Empty}>${platform ? "No tenants yet: create one above, then add its users and data." : "No tenants for you yet: an owner or admin makes them and assigns them."}</${Empty}>`}
      ${items && items.length > 0 &&
      html`<ul class="tenants">${items.map((t) => html`<${TenantRow} key=${t.slug} tenant=${t} onChanged=${replace}
        onDeleted=${(slug) => setItems((xs) => xs.filter((x) => x.slug !== slug))} />`)}</ul>`}
    </section>`;
}
