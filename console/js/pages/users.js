// The users of a tenant: search by email, keyset paging, create (the admin API's, with
// sign-up's checks; optionally without a password, or already verified), disable/enable,
// revoke sessions, delete.

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin, session, tenantApi } from "../api.js";
import { Empty, ErrorBox, Field, Loading, fieldError, fmtTime, html, useAction, useDebounced, useLoad } from "../ui.js";

const PAGE = 25;

function CreateUser({ slug, onCreated }) {
  const [open, setOpen] = useState(false);
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [verified, setVerified] = useState(false);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    // No password typed: the user gets none, and chooses one through a reset mail.
    const body = { email, verified, ...(password ? { password } : {}) };
    const r = await run(() => admin.createUser(slug, body));
    if (r) {
      setEmail("");
      setPassword("");
      setVerified(false);
      setOpen(false);
      onCreated(r);
    }
  };
  if (!open) return html`<button type="button" onClick=${() => setOpen(true)}>Create a user</button>`;
  const taken = error && error.code === "email_taken" ? "A user with this email exists." : null;
  return html`<form class="card" onSubmit=${submit} aria-labelledby="new-user-h" data-testid="create-user">
    <h2 id="new-user-h">Create a user</h2>
    <div class="row wrap">
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} required autocomplete="off" error=${taken || fieldError(error, "email")} />
      <${Field} label="Password (optional)" type="password" value=${password} onInput=${setPassword} autocomplete="new-password"
        hint="8 to 128 characters. Leave it empty and the user has none: they sign in after a password reset mail."
        error=${fieldError(error, "password")} />
    </div>
    <label class="check"><input type="checkbox" checked=${verified} onChange=${(e) => setVerified(e.target.checked)} />
      Email already verified</label>
    <div class="row">
      <button type="submit" disabled=${busy}>${busy ? "Creating…" : "Create user"}</button> <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    ${error && !error.fields && html`<${ErrorBox} error=${error} what="create the user" />`}
  </form>`;
}

function UserRow({ slug, user, onChanged, onDeleted, write }) {
  const action = useAction();
  const [confirming, setConfirming] = useState(false);
  const [note, setNote] = useState(null);
  const act = async (what, fn) => {
    setNote(null);
    const r = await action.run(fn);
    if (r !== undefined) {
      if (what) setNote(what);
      const fresh = await action.run(() => admin.user(slug, user.id));
      if (fresh) onChanged(fresh);
    }
  };
  const [open, setOpen] = useState(false);
  const detail = html`<tr class="detail" data-testid="user-detail">
    <td colspan=${write ? 4 : 3}>
      <dl class="facts">
        <div><dt>Id</dt><dd><code>${user.id}</code></dd></div>
        <div><dt>Email verified</dt><dd>${user.email_verified ? "yes" : "no"}</dd></div>
        <div><dt>Created</dt><dd>${fmtTime(user.created_at)}</dd></div>
        <div><dt>Updated</dt><dd>${fmtTime(user.updated_at)}</dd></div>
      </dl>
      ${write && html`<div class="row wrap"><button type="button" disabled=${action.busy}
        onClick=${() => act("Password reset mail requested (sent if the server has SMTP set up).", () => tenantApi(slug).requestReset(user.email))}>Send password reset mail</button>
        ${!user.email_verified && html`<button type="button" disabled=${action.busy}
          onClick=${() => act("Verification mail requested (sent if the server has SMTP set up).", () => tenantApi(slug).requestVerification(user.email))}>Send verification mail</button>
          <button type="button" disabled=${action.busy}
          onClick=${() => act("Email marked verified.", () => admin.verifyUser(slug, user.id))}>Mark email verified</button>`}</div>
        ${note && html`<small role="status">${note}</small>`}
        <${ErrorBox} error=${action.error} what="change the user" />`}
    </td>
  </tr>`;
  const row = html`<tr data-testid="user-row">
    <th scope="row"><span class="email">${user.email}</span>${user.email_verified ? html` <span class="badge">verified</span>` : ""}
      <br /><button type="button" class="link small" aria-expanded=${open} onClick=${() => setOpen(!open)}
        aria-label=${`${open ? "Hide details" : "Details"} of ${user.email}`}>${open ? "Hide details" : "Details"}</button></th>
    <td>${user.disabled ? html`<span class="badge warn">disabled</span>` : "active"}</td>
    <td>${fmtTime(user.created_at)}</td>
    ${write && html`<td>
      <div class="row wrap actions" role="group" aria-label=${`Actions for ${user.email}`}>
        ${user.disabled
          ? html`<button type="button" disabled=${action.busy} onClick=${() => act(null, () => admin.enableUser(slug, user.id))}>Enable</button>`
          : html`<button type="button" disabled=${action.busy} onClick=${() => act(null, () => admin.disableUser(slug, user.id))}>Disable</button>`}
        <button type="button" disabled=${action.busy} onClick=${() => act("Sessions revoked.", () => admin.revokeSessions(slug, user.id))}>Revoke sessions</button>
        ${confirming
          ? html`<span role="group" aria-label="Confirm deletion">Delete ${user.email}?
              <button type="button" class="danger" disabled=${action.busy}
                onClick=${async () => { if ((await action.run(() => admin.deleteUser(slug, user.id))) !== undefined) onDeleted(user.id); }}>Yes, delete</button>
              <button type="button" onClick=${() => setConfirming(false)}>No</button></span>`
          : html`<button type="button" class="danger" onClick=${() => setConfirming(true)}>Delete</button>`}
      </div>
      ${!open && note && html`<small role="status">${note}</small>`}
      ${!open && html`<${ErrorBox} error=${action.error} what="change the user" />`}
    </td>`}
  </tr>`;
  return open ? html`${row}${detail}` : row;
}

export function Users({ slug }) {
  const [search, setSearch] = useState("");
  const query = useDebounced(search.trim(), 300);
  // Cursors of the pages before this one (keyset paging has no page numbers).
  const [cursors, setCursors] = useState([]);
  const [cursor, setCursor] = useState(null);
  useEffect(() => {
    setCursors([]);
    setCursor(null);
  }, [query]);
  const page = useLoad(() => admin.users(slug, { search: query, cursor, limit: PAGE }), [slug, query, cursor]);
  const [items, setItems] = useState(null);
  useEffect(() => page.data && setItems(page.data.items), [page.data]);
  const replace = (u) => setItems((xs) => xs.map((x) => (x.id === u.id ? u : x)));
  const notFound = page.error && page.error.status === 404;
  const write = session.can("write");
  return html`<h1>Users <small class="muted">of ${slug}</small></h1>
    ${notFound
      ? html`<${ErrorBox} error=${page.error} what="find this tenant" /><p><a href="/_/tenants">Back to the tenants</a></p>`
      : html`
    <div class="row wrap between toolbar">
      <div role="search">
        <${Field} label="Search by email" type="search" value=${search} onInput=${setSearch} placeholder="part of an email" />
      </div>
      ${write && html`<${CreateUser} slug=${slug} onCreated=${() => page.reload()} />`}
    </div>
    ${page.loading && html`<${Loading} what="users" />`}
    <${ErrorBox} error=${page.error} what="load the users" retry=${page.reload} />
    ${items && items.length === 0 && !page.loading &&
    html`<${Empty}>${query ? `No user's email contains “${query}”.` : !write ? "No users yet: they appear when the tenant's app signs them up." : "No users yet. Create one here, or let your app sign users up through /v1/t/" + slug + "/auth/signup."}</${Empty}>`}
    ${items && items.length > 0 &&
    html`<div class="scroll"><table aria-busy=${page.loading ? "true" : "false"}>
      <caption class="sr-only">Users of ${slug}</caption>
      <thead><tr><th scope="col">Email</th><th scope="col">Status</th><th scope="col">Created</th>${write && html`<th scope="col">Actions</th>`}</tr></thead>
      <tbody>${items.map((u) => html`<${UserRow} key=${u.id} slug=${slug} user=${u} write=${write} onChanged=${replace}
        onDeleted=${(id) => setItems((xs) => xs.filter((x) => x.id !== id))} />`)}</tbody>
    </table></div>`}
    <nav class="pager row" aria-label="Pages of users">
      <button type="button" disabled=${cursors.length === 0 || page.loading}
        onClick=${() => { setCursor(cursors.at(-1)); setCursors(cursors.slice(0, -1)); }}>Previous page</button>
      <button type="button" disabled=${!(page.data && page.data.next_cursor) || page.loading}
        onClick=${() => { setCursors([...cursors, cursor]); setCursor(page.data.next_cursor); }}>Next page</button>
    </nav>`}`;
}
