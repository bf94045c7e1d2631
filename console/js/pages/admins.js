// Admins (owners only: invite by mail or add, change role and tenants, remove) and admin
// API keys (make one, no wider than oneself: shown once; list; revoke). The server enforces every rule here
// (the last owner, the scope of a key); the page only leaves out what it would refuse
// and shows the server's answer when it refuses anyway.

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { Empty, ErrorBox, Field, Loading, NewKey, fieldError, fmtTime, html, useAction, useLoad } from "../ui.js";

const ROLES = ["owner", "admin", "tenant_admin", "viewer"];
const ROLE_NAMES = { owner: "Owner", admin: "Admin", tenant_admin: "Tenant admin", viewer: "Viewer" };
const ROLE_HINT = {
  owner: "Everything, other admins included.",
  admin: "Every tenant; not other admins.",
  tenant_admin: "Only the tenants ticked below; the others are invisible.",
  viewer: "Reads everything but secrets; changes nothing.",
};

/** The roles a key made by this session may have: never wider than the maker. */
function keyRoles() {
  if (session.role === "owner") return ROLES;
  if (session.role === "admin") return ["admin", "tenant_admin", "viewer"];
  if (session.role === "tenant_admin") return ["tenant_admin"];
  return [];
}

function RoleSelect({ id, value, onChange, roles = ROLES }) {
  return html`<div class="field">
    <label for=${id}>Role</label>
    <select id=${id} value=${value} onChange=${(e) => onChange(e.target.value)} aria-describedby=${`${id}-hint`}>
      ${roles.map((r) => html`<option key=${r} value=${r}>${ROLE_NAMES[r]}</option>`)}
    </select>
    <small id=${`${id}-hint`} class="hint">${ROLE_HINT[value]}</small>
  </div>`;
}

/** Tenants as checkboxes (for a tenant admin's assignment). */
function TenantPicker({ legend, tenants, value, onChange, error }) {
  if (!tenants) return html`<${Loading} what="tenants" />`;
  const toggle = (slug, on) => onChange(on ? [...value, slug] : value.filter((s) => s !== slug));
  return html`<fieldset class="tenant-picker" aria-invalid=${error ? "true" : undefined}>
    <legend>${legend}</legend>
    ${tenants.length === 0 && html`<p class="muted small">No tenants yet: <a href="/_/tenants">create one</a> first.</p>`}
    ${tenants.map((t) => html`<label key=${t.slug} class="check">
      <input type="checkbox" checked=${value.includes(t.slug)} onChange=${(e) => toggle(t.slug, e.target.checked)} />
      ${t.slug}</label>`)}
    ${error && html`<small class="field-error" role="alert">${error}</small>`}
  </fieldset>`;
}

const tenantsOf = (a) => (a.role === "tenant_admin" ? (a.tenants.length ? a.tenants.join(", ") : "none") : "all");

function AddAdmin({ tenants, onAdded }) {
  const [open, setOpen] = useState(false);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [role, setRole] = useState("tenant_admin");
  const [picked, setPicked] = useState([]);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const made = await run(() => admin.addAdmin({ email: email.trim(), password, role, tenants: role === "tenant_admin" ? picked : [] }));
    if (made) {
      setEmail("");
      setPassword("");
      setPicked([]);
      setOpen(false);
      onAdded(made);
    }
  };
  if (!open) return html`<button type="button" onClick=${() => setOpen(true)}>Add an admin</button>`;
  const taken = error && error.code === "admin_exists" ? "An admin with this email exists." : null;
  return html`<form class="card" onSubmit=${submit} aria-labelledby="add-admin-h">
    <h3 id="add-admin-h">Add an admin</h3>
    <div class="row wrap">
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} required autocomplete="off" error=${taken || fieldError(error, "email")} />
      <${Field} label="Password" type="password" value=${password} onInput=${setPassword} required autocomplete="new-password"
        hint="Give it to them privately; they can change it." error=${fieldError(error, "password")} />
      <${RoleSelect} id="add-admin-role" value=${role} onChange=${setRole} />
    </div>
    ${role === "tenant_admin" && html`<${TenantPicker} legend="Their tenants" tenants=${tenants} value=${picked} onChange=${setPicked} error=${fieldError(error, "tenants")} />`}
    <div class="row wrap">
      <button type="submit" disabled=${busy}>${busy ? "Adding…" : "Add admin"}</button>
      <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    ${error && !error.fields && !taken && html`<${ErrorBox} error=${error} what="add the admin" />`}
  </form>`;
}

/** Invite by mail: the invitee gets a one-time link and chooses their own password. */
function InviteAdmin({ tenants, onInvited }) {
  const [open, setOpen] = useState(false);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("tenant_admin");
  const [picked, setPicked] = useState([]);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const made = await run(() => admin.invite({ email: email.trim(), role, tenants: role === "tenant_admin" ? picked : [] }));
    if (made) {
      setEmail("");
      setPicked([]);
      setOpen(false);
      onInvited(made);
    }
  };
  if (!open) return html`<button type="button" onClick=${() => setOpen(true)}>Invite by mail</button>`;
  const taken = error && error.code === "admin_exists" ? "An admin with this email exists." : null;
  return html`<form class="card" onSubmit=${submit} aria-labelledby="invite-admin-h">
    <h3 id="invite-admin-h">Invite an admin by mail</h3>
    <p class="muted small">They get a link that works once, for a few days, to choose their password and sign in.</p>
    <div class="row wrap">
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} required autocomplete="off" error=${taken || fieldError(error, "email")} />
      <${RoleSelect} id="invite-admin-role" value=${role} onChange=${setRole} />
    </div>
    ${role === "tenant_admin" && html`<${TenantPicker} legend="Their tenants" tenants=${tenants} value=${picked} onChange=${setPicked} error=${fieldError(error, "tenants")} />`}
    <div class="row wrap">
      <button type="submit" disabled=${busy}>${busy ? "Inviting…" : "Send invitation"}</button>
      <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    ${error && !error.fields && !taken && html`<${ErrorBox} error=${error} what="invite the admin" />`}
  </form>`;
}

/** Invitations sent and not yet accepted (nor expired), with a way to withdraw each. */
function PendingInvites({ list }) {
  const withdraw = useAction();
  const items = list.data ? list.data.items : null;
  if (list.error) return html`<${ErrorBox} error=${list.error} what="load the invitations" retry=${list.reload} />`;
  if (!items || items.length === 0) return null;
  return html`<section aria-labelledby="invites-h">
    <h3 id="invites-h">Invitations not yet accepted</h3>
    <${ErrorBox} error=${withdraw.error} what="withdraw the invitation" />
    <div class="scroll"><table>
      <caption class="sr-only">Pending invitations, oldest first</caption>
      <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Tenants</th><th scope="col">Link works until</th><th scope="col">Actions</th></tr></thead>
      <tbody>${items.map((i) => html`<tr key=${i.id} data-testid="invite-row" data-email=${i.email}>
        <th scope="row"><span class="email">${i.email}</span></th><td>${ROLE_NAMES[i.role] || i.role}</td><td>${tenantsOf(i)}</td>
        <td>${fmtTime(i.expires_at)}</td>
        <td><button type="button" class="danger" disabled=${withdraw.busy} aria-label=${`Withdraw the invitation of ${i.email}`}
          onClick=${async () => { if ((await withdraw.run(() => admin.withdrawInvite(i.id))) !== undefined) list.reload(); }}>Withdraw</button></td>
      </tr>`)}</tbody>
    </table></div>
  </section>`;
}

function AdminRow({ who, tenants, onChanged, onRemoved }) {
  const [mode, setMode] = useState(null); // null | "edit" | "remove"
  const [role, setRole] = useState(who.role);
  const [picked, setPicked] = useState(who.tenants);
  const action = useAction();
  const open = (m) => {
    action.setError(null);
    setRole(who.role);
    setPicked(who.tenants);
    setMode(mode === m ? null : m);
  };
  const save = async (e) => {
    e.preventDefault();
    const changed = await action.run(() => admin.updateAdmin(who.id, { role, tenants: role === "tenant_admin" ? picked : [] }));
    if (changed) {
      setMode(null);
      onChanged(changed);
      if (who.id === session.id) session.refresh();
    }
  };
  const remove = async () => {
    if ((await action.run(() => admin.removeAdmin(who.id))) !== undefined) onRemoved(who.id);
  };
  const me = who.id === session.id;
  return html`<tr data-testid="admin-row" data-email=${who.email}>
    <th scope="row"><span class="email">${who.email}</span>${me ? html` <span class="badge">you</span>` : ""}</th>
    <td>${ROLE_NAMES[who.role] || who.role}</td>
    <td>${tenantsOf(who)}</td>
    <td>${fmtTime(who.created_at)}</td>
    <td>
      <div class="row wrap actions" role="group" aria-label=${`Actions for ${who.email}`}>
        <button type="button" aria-expanded=${mode === "edit"} onClick=${() => open("edit")}>Change role</button>
        ${mode === "remove"
          ? html`<span role="group" aria-label="Confirm removal">Remove ${who.email}?
              <button type="button" class="danger" disabled=${action.busy} onClick=${remove}>Yes, remove</button>
              <button type="button" onClick=${() => setMode(null)}>No</button></span>`
          : html`<button type="button" class="danger" onClick=${() => open("remove")}>Remove</button>`}
      </div>
      ${mode === "edit" &&
      html`<form onSubmit=${save} aria-label=${`Change ${who.email}`}>
        <${RoleSelect} id=${`role-${who.id}`} value=${role} onChange=${setRole} />
        ${role === "tenant_admin" && html`<${TenantPicker} legend="Their tenants" tenants=${tenants} value=${picked} onChange=${setPicked} error=${fieldError(action.error, "tenants")} />`}
        <button type="submit" disabled=${action.busy}>Save</button> <button type="button" onClick=${() => setMode(null)}>Cancel</button>
      </form>`}
      ${!fieldError(action.error, "tenants") && html`<${ErrorBox} error=${action.error} what=${mode === "remove" ? "remove the admin" : "change the admin"} />`}
    </td>
  </tr>`;
}

function Admins({ tenants }) {
  const list = useLoad(() => admin.admins(), []);
  const invites = useLoad(() => admin.invites(), []);
  const [items, setItems] = useState(null);
  useEffect(() => list.data && setItems(list.data.items), [list.data]);
  const replace = (a) => setItems((xs) => xs.map((x) => (x.id === a.id ? a : x)));
  return html`<section aria-labelledby="admins-h">
    <div class="row wrap between"><h2 id="admins-h">Admins</h2>
      <div class="row wrap">
        <${InviteAdmin} tenants=${tenants} onInvited=${() => invites.reload()} />
        <${AddAdmin} tenants=${tenants} onAdded=${(a) => setItems((xs) => [...(xs || []), a])} />
      </div></div>
    ${list.loading && !items && html`<${Loading} what="admins" />`}
    <${ErrorBox} error=${list.error} what="load the admins" retry=${list.reload} />
    ${items && items.length === 1 &&
    html`<${Empty}>You are the only admin. Invite or add one above: a second owner, so that losing one password does not lock you out, or a tenant admin for one app.</${Empty}>`}
    ${items && items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Admins, oldest first</caption>
      <thead><tr><th scope="col">Email</th><th scope="col">Role</th><th scope="col">Tenants</th><th scope="col">Added</th><th scope="col">Actions</th></tr></thead>
      <tbody>${items.map((a) => html`<${AdminRow} key=${a.id} who=${a} tenants=${tenants} onChanged=${replace}
        onRemoved=${(id) => setItems((xs) => xs.filter((x) => x.id !== id))} />`)}</tbody>
    </table></div>`}
    <${PendingInvites} list=${invites} />
  </section>`;
}

function CreateApiKey({ tenants, onCreated }) {
  const roles = keyRoles();
  const [name, setName] = useState("");
  const [role, setRole] = useState(roles.includes("admin") ? "admin" : roles[0]);
  const [picked, setPicked] = useState([]);
  const [expires, setExpires] = useState("");
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    const body = { name: name.trim(), role, tenants: role === "tenant_admin" ? picked : [] };
    if (expires) body.expires_at = `${expires}T00:00:00Z`;
    const made = await run(() => admin.createApiKey(body));
    if (made) {
      setName("");
      setPicked([]);
      setExpires("");
      onCreated(made);
    }
  };
  return html`<form class="card" onSubmit=${submit} aria-labelledby="new-api-key-h">
    <h3 id="new-api-key-h">Make an API key</h3>
    <div class="row wrap">
      <${Field} label="Key name" value=${name} onInput=${setName} required autocomplete="off" hint="What it is for, like “deploy from CI”."
        error=${fieldError(error, "name")} />
      <${RoleSelect} id="api-key-role" value=${role} onChange=${setRole} roles=${roles} />
      <${Field} label="Expires on (optional)" type="date" value=${expires} onInput=${setExpires}
        hint="It stops working at 00:00 UTC that day. Empty: never." error=${fieldError(error, "expires_at")} />
    </div>
    ${role === "tenant_admin" && html`<${TenantPicker} legend="Its tenants" tenants=${tenants} value=${picked} onChange=${setPicked} error=${fieldError(error, "tenants")} />`}
    <button type="submit" disabled=${busy}>${busy ? "Making…" : "Make key"}</button>
    ${error && !error.fields && html`<${ErrorBox} error=${error} what="make the key" />`}
  </form>`;
}

function ApiKeys({ tenants }) {
  const list = useLoad(() => admin.apiKeys(), []);
  const [made, setMade] = useState(null);
  const revoke = useAction();
  const write = session.can("write");
  const items = list.data ? list.data.items.filter((k) => !k.revoked_at) : null;
  const revoked = list.data ? list.data.items.length - items.length : 0;
  const expired = (k) => k.expires_at && new Date(k.expires_at) <= new Date();
  return html`<section aria-labelledby="api-keys-h">
    <h2 id="api-keys-h">API keys</h2>
    <p class="muted small">For the CLI (<code>plinth login --server …</code>) and CI: sent as <code>Authorization: Bearer</code>, with the role and
      tenants given here. ${session.can("owner") ? "You see every admin's keys." : "You see the keys you made."}</p>
    ${write
      ? html`<${CreateApiKey} tenants=${tenants} onCreated=${(k) => { setMade(k); list.reload(); }} />`
      : html`<p class="muted">A viewer makes no API keys.</p>`}
    ${made && html`<${NewKey} made=${made} onDone=${() => setMade(null)} />`}
    ${list.loading && !list.data && html`<${Loading} what="API keys" />`}
    <${ErrorBox} error=${list.error} what="load the API keys" retry=${list.reload} />
    <${ErrorBox} error=${revoke.error} what="revoke the key" />
    ${items && items.length === 0 &&
    html`<${Empty}>No API keys${revoked ? ` (${revoked} revoked)` : ""}.${write ? " Make one above for the CLI or a CI job." : ""}</${Empty}>`}
    ${items && items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Admin API keys${revoked ? `; ${revoked} revoked not shown` : ""}</caption>
      <thead><tr><th scope="col">Name</th><th scope="col">Starts with</th><th scope="col">Role</th><th scope="col">Tenants</th>
        <th scope="col">Last used</th><th scope="col">Expires</th>${write && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${items.map((k) => html`<tr key=${k.id} data-testid="api-key-row">
        <th scope="row">${k.name}</th><td><code>${k.prefix}</code></td><td>${ROLE_NAMES[k.role] || k.role}</td><td>${tenantsOf(k)}</td>
        <td>${k.last_used_at ? fmtTime(k.last_used_at) : "never"}</td>
        <td>${k.expires_at ? html`${fmtTime(k.expires_at)}${expired(k) ? html` <span class="badge warn">expired</span>` : ""}` : "never"}</td>
        ${write && html`<td><button type="button" class="danger" disabled=${revoke.busy} aria-label=${`Revoke API key ${k.name}`}
          onClick=${async () => { if ((await revoke.run(() => admin.revokeApiKey(k.id))) !== undefined) list.reload(); }}>Revoke</button></td>`}
      </tr>`)}</tbody>
    </table></div>`}
    ${revoked > 0 && items && items.length > 0 && html`<p class="muted small">${revoked} revoked key${revoked === 1 ? "" : "s"} not shown.</p>`}
  </section>`;
}

export function AdminsAndKeys() {
  const tenants = useLoad(() => admin.tenants(), []);
  const list = tenants.data ? tenants.data.items : null;
  return html`<h1>Admins and API keys</h1>
    <p class="muted">Signed in as ${session.email}, ${ROLE_NAMES[session.role] || session.role}${
      session.role === "tenant_admin" ? ` of ${session.tenants.join(", ") || "no tenant"}` : ""}.</p>
    ${session.can("owner")
      ? html`<${Admins} tenants=${list} />`
      : html`<section aria-labelledby="admins-h"><h2 id="admins-h">Admins</h2>
          <p class="muted">Only an owner sees and manages admins.</p></section>`}
    <${ErrorBox} error=${tenants.error} what="load the tenants" retry=${tenants.reload} />
    <${ApiKeys} tenants=${list} />`;
}
