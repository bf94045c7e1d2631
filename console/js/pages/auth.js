// First run (the setup token printed by `plinth serve` makes the first admin), sign-in,
// and the page an admin invitation's mailed link opens.

import { useEffect, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { ErrorBox, Field, fieldError, go, html, useAction } from "../ui.js";

export function Setup() {
  const [token, setToken] = useState("");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e) => {
    e.preventDefault();
    run(async () => {
      await admin.setup(token.trim(), email, password);
      await session.login(email, password);
    });
  };
  const tokenError = error && error.code === "invalid_setup_token" ? "This token is wrong or was already used." : fieldError(error, "token");
  return html`<h1>First run</h1>
    <p>Create the first admin (an owner) with the one-time setup token that <code>plinth serve</code> printed when it started.</p>
    <form onSubmit=${submit} aria-describedby="setup-err">
      <${Field} label="Setup token" value=${token} onInput=${setToken} autocomplete="off" spellcheck="false" required error=${tokenError} />
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} autocomplete="username" required error=${fieldError(error, "email")} />
      <${Field} label="Password" type="password" value=${password} onInput=${setPassword} autocomplete="new-password" required
        hint="8 to 128 characters." error=${fieldError(error, "password")} />
      <button type="submit" disabled=${busy}>${busy ? "Creating…" : "Create the first admin"}</button>
    </form>
    <div id="setup-err">${error && !error.fields && !tokenError && html`<${ErrorBox} error=${error} what="create the first admin" />`}</div>
    <p>Already set up? <a href="/_/login">Sign in</a>.</p>`;
}

/** Sign-in; with `again`, over a page whose session ended (the page keeps its state). */
export function Login({ again = false }) {
  const [email, setEmail] = useState(again ? session.email || "" : "");
  const [password, setPassword] = useState("");
  const { busy, error, run } = useAction();
  const submit = (e) => {
    e.preventDefault();
    run(() => session.login(email, password));
  };
  // Over a page, the dialog takes the focus (the page behind it is inert).
  useEffect(() => {
    if (again) document.getElementById("relogin-password")?.focus();
  }, []);
  const message =
    error && error.status === 401 ? "Wrong email or password." : error && error.status === 429 ? "Too many attempts; wait a little and try again." : null;
  return html`<h1 id=${again ? "relogin-title" : undefined}>${again ? "Your session ended" : "Sign in"}</h1>
    ${again && html`<p>Sign in again to carry on; what you were doing stays on the page.</p>`}
    <form onSubmit=${submit}>
      <${Field} label="Email" type="email" value=${email} onInput=${setEmail} autocomplete="username" required />
      <${Field} id=${again ? "relogin-password" : undefined} label="Password" type="password" value=${password} onInput=${setPassword} autocomplete="current-password" required />
      <button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Sign in"}</button>
      ${again && html` <button type="button" onClick=${() => session.forget()}>Sign out</button>`}
    </form>
    ${message ? html`<div class="state error" role="alert">${message}</div>` : html`<${ErrorBox} error=${error} what="sign in" />`}
    ${!again && html`<p>First run? <a href="/_/setup">Create the first admin with the setup token</a>.</p>`}`;
}

/** The token of an invitation link (`/_/invite#token=...`: in the fragment, so it is never
 *  sent to a server nor logged), taken once and then cleared from the address bar. */
function takeInviteToken() {
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  if (location.hash) history.replaceState(null, "", location.pathname);
  return token;
}

/** An invited admin chooses a password and is signed in. */
export function AcceptInvite() {
  const [token] = useState(takeInviteToken);
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [mismatch, setMismatch] = useState(false);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    setMismatch(password !== again);
    if (password !== again) return;
    const done = await run(async () => {
      await session.acceptInvite(token, password);
      return true;
    });
    if (done) go("/_/");
  };
  if (!token) {
    return html`<h1>Accept an invitation</h1>
      <div class="state error" role="alert">This address holds no invitation. Open the link of the invitation mail again, whole.</div>
      <p>Already an admin? <a href="/_/login">Sign in</a>.</p>`;
  }
  const spent = error && error.code === "invalid_or_expired_token";
  const exists = error && error.code === "admin_exists";
  return html`<h1>Accept an invitation</h1>
    <p>You are invited to administer this Plinth server. Choose your password to sign in.</p>
    ${spent
      ? html`<div class="state error" role="alert" data-testid="invite-spent">This invitation is unknown, expired or already used. Ask an owner for a new one.</div>`
      : html`<form onSubmit=${submit}>
          <${Field} label="Password" type="password" value=${password} onInput=${setPassword} autocomplete="new-password" required
            hint="8 to 128 characters." error=${fieldError(error, "password")} />
          <${Field} label="Password again" type="password" value=${again} onInput=${setAgain} autocomplete="new-password" required
            error=${mismatch ? "The two passwords differ." : null} />
          <button type="submit" disabled=${busy}>${busy ? "Signing in…" : "Set password and sign in"}</button>
        </form>`}
    ${exists && html`<div class="state error" role="alert">An admin with this email exists already: <a href="/_/login">sign in</a> instead.</div>`}
    ${error && !error.fields && !spent && !exists && html`<${ErrorBox} error=${error} what="accept the invitation" />`}
    <p>Already an admin? <a href="/_/login">Sign in</a>.</p>`;
}
