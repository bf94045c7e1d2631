// Shared pieces of the console: htm bound to Preact (which escapes every string it renders;
// nothing here ever sets innerHTML), the loading / empty / error states, form fields and
// a hook for data loaded from the API.

import { h } from "../vendor/preact.mjs";
import { useCallback, useEffect, useRef, useState } from "../vendor/hooks.mjs";
import htm from "../vendor/htm.mjs";

export const html = htm.bind(h);

/** Navigates inside the console without reloading it. */
export function go(path) {
  if (location.pathname + location.search === path) return;
  history.pushState(null, "", path);
  dispatchEvent(new PopStateEvent("popstate"));
}

export function Loading({ what = "" }) {
  return html`<p class="state loading" role="status" aria-live="polite">Loading${what ? ` ${what}` : ""}…</p>`;
}

export function Empty({ children }) {
  return html`<div class="state empty" role="status">${children}</div>`;
}

/** An API error: what failed, the server's words, a retry button when given one. */
export function ErrorBox({ error, retry, what }) {
  if (!error) return null;
  const code = error.code ? html` <code>${error.code}</code>` : null;
  return html`<div class="state error" role="alert">
    <strong>${what ? `Could not ${what}.` : "That failed."}</strong>${code}
    <div class="detail">${error.message}</div>
    ${retry && html`<button type="button" onClick=${retry}>Try again</button>`}
  </div>`;
}

/** Loads `fn()` when `deps` change; `reload()` loads again keeping the old data shown. */
export function useLoad(fn, deps) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const seq = useRef(0);
  const load = useCallback(() => {
    const n = ++seq.current;
    setState((s) => ({ ...s, loading: true, error: null }));
    fn().then(
      (data) => n === seq.current && setState({ loading: false, data, error: null }),
      (error) => n === seq.current && setState((s) => ({ loading: false, data: s.data, error })),
    );
  }, deps);
  useEffect(load, [load]);
  return { ...state, reload: load };
}

/** Runs an action, tracking whether it is busy and its error. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = useCallback(async (fn) => {
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (e) {
      setError(e);
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, setError, run };
}

let ids = 0;
/** A labelled input; `error` (a string) is announced and tied to the input. */
export function Field({ label, hint, error, type = "text", value, onInput, id, ...rest }) {
  const own = useRef(id || `f${++ids}`);
  const fid = own.current;
  const describedBy = [hint && `${fid}-hint`, error && `${fid}-err`].filter(Boolean).join(" ") || undefined;
  const input =
    type === "textarea"
      ? html`<textarea id=${fid} value=${value} onInput=${(e) => onInput(e.target.value)} aria-invalid=${error ? "true" : undefined} aria-describedby=${describedBy} ...${rest}></textarea>`
      : html`<input id=${fid} type=${type} value=${value} onInput=${(e) => onInput(e.target.value)} aria-invalid=${error ? "true" : undefined} aria-describedby=${describedBy} ...${rest} />`;
  return html`<div class="field">
    <label for=${fid}>${label}</label>
    ${input}
    ${hint && html`<small id=${`${fid}-hint`} class="hint">${hint}</small>`}
    ${error && html`<small id=${`${fid}-err`} class="field-error" role="alert">${error}</small>`}
  </div>`;
}

/** The message for one field of a problem's `fields`, if any. */
export const fieldError = (error, name) => (error && error.fields && error.fields[name]) || null;

export function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? String(s) : d.toLocaleString();
}

export function fmtNumber(n) {
  return typeof n === "number" ? n.toLocaleString() : "—";
}

/** Calls `fn` with the latest value once the value stopped changing for `ms`. */
export function useDebounced(value, ms) {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

/** A destructive action confirmed by typing `word`. */
export function ConfirmTyped({ word, label, action, onConfirm, onCancel, busy, error }) {
  const [typed, setTyped] = useState("");
  return html`<form class="confirm" onSubmit=${(e) => { e.preventDefault(); if (typed === word) onConfirm(); }}>
    <p>${label}</p>
    <${Field} label=${`Type ${word} to confirm`} value=${typed} onInput=${setTyped} autocomplete="off" spellcheck="false" />
    <div class="row">
      <button type="submit" class="danger" disabled=${typed !== word || busy}>${action}</button>
      <button type="button" onClick=${onCancel}>Cancel</button>
    </div>
    <${ErrorBox} error=${error} what=${action.toLowerCase()} />
  </form>`;
}

/** A key just made: shown this once, with a copy button. */
export function NewKey({ made, onDone }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(made.key);
      setCopied(true);
    } catch {
      setCopied(false);
    }
  };
  return html`<div class="state info" role="status" data-testid="new-key">
    <p><strong>Key “${made.name}” created.</strong> Copy it now: it is shown only once.</p>
    <div class="row wrap"><code class="secret" data-testid="key-value">${made.key}</code>
      <button type="button" onClick=${copy}>${copied ? "Copied" : "Copy"}</button>
      <button type="button" onClick=${onDone}>Done</button></div>
  </div>`;
}
