// The tenant's rule set: the active version in an editor (code-editor.js: line numbers,
// TOML and CEL highlighted), checked by the server as it is typed (`POST …/rules/validate`,
// the very check an install makes, installing nothing); installing it is validated whole
// again. Errors (collection, operation, line:column) are marked in the editor at their
// place and listed, each moving the caret there; the caret's own line and column are
// shown under the editor. A refused set leaves the active one in force. Test cases
// (`[[case]]` tables, as `plinth rules test` reads them) run on the server against the
// text in the editor (`POST …/rules/test`), installed or not; they are kept in this
// browser's storage per tenant. The history lists every installed version; rolling back
// installs an earlier one again as a new version (confirmed first).

import { useEffect, useRef, useState } from "../../vendor/hooks.mjs";
import { admin, session } from "../api.js";
import { CodeEditor } from "../code-editor.js";
import { Empty, ErrorBox, Field, Loading, fieldError, fmtTime, html, useAction, useDebounced, useLoad } from "../ui.js";

/** A line diff of `a` to `b` (longest common subsequence): [[" " | "-" | "+", line]]. */
export function diffLines(a, b) {
  const x = a.split("\n"), y = b.split("\n");
  if (x.length * y.length > 4_000_000) return null;
  const n = x.length, m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--)
    for (let j = m - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && x[i] === y[j]) out.push([" ", x[i++], j++]);
    else if (j < m && (i === n || lcs[i][j + 1] >= lcs[i + 1][j])) out.push(["+", y[j++]]);
    else out.push(["-", x[i++]]);
  }
  return out;
}

/** The server's check of `text` once typing pauses: null before the first answer;
 *  `stale` while the answer is for an older text. */
function useLiveCheck(slug, text, enabled) {
  const settled = useDebounced(text, 400);
  const [check, setCheck] = useState(null);
  useEffect(() => {
    if (!enabled || settled === null || !settled.trim()) return setCheck(null);
    let live = true;
    admin.validateRules(slug, settled).then(
      (r) => live && setCheck({ source: settled, ...r }),
      (e) => live && setCheck({ source: settled, failed: e }),
    );
    return () => (live = false);
  }, [slug, settled, enabled]);
  if (!check) return null;
  return check.source === text ? check : { ...check, stale: true };
}

// Test cases are TOML too, with no CEL in their strings.
const NO_CEL = new Set();

/** The server's errors as the editor marks them (those with a place). */
const marksOf = (errors) =>
  errors
    .filter((e) => Number.isInteger(e.line) && Number.isInteger(e.column))
    .map((e) => ({ line: e.line, column: e.column, message: `${e.collection ? `[${e.collection}]` : ""}${e.operation ? ` ${e.operation}` : ""}${e.collection || e.operation ? ": " : ""}${e.message}` }));

const place = (e) => `${e.collection ? `[${e.collection}]` : ""}${e.operation ? ` ${e.operation}` : ""}${e.collection || e.operation ? ", " : ""}line ${e.line} column ${e.column}`;

function ErrorList({ errors, jump }) {
  return html`<ul>${errors.map((e, i) => html`<li key=${i}><button type="button" class="link" onClick=${() => jump(e)}>
    ${place(e)}</button>: ${e.message}</li>`)}</ul>`;
}

/** What the live check says, under the editor. */
function LiveCheck({ check, jump }) {
  if (!check) return null;
  if (check.failed) return html`<p class="muted small" data-testid="rules-check">Could not check as you type (${check.failed.message}); Install still checks.</p>`;
  const stale = check.stale ? html` <span class="muted">(checking…)</span>` : "";
  if (check.valid)
    return html`<div class="state ok" data-testid="rules-check" data-valid="true"><strong>Valid</strong>${stale}:
      ${check.collections.length ? check.collections.join(", ") : "no collections"}.
      ${check.warnings.length > 0 && html`<ul>${check.warnings.map((w, i) => html`<li key=${i}>${w}</li>`)}</ul>`}</div>`;
  return html`<div class="state error" data-testid="rules-check" data-valid="false">
    <strong>${check.errors.length} error${check.errors.length === 1 ? "" : "s"}</strong>${stale}
    <${ErrorList} errors=${check.errors} jump=${jump} /></div>`;
}

/** Which rule of the active set decides an operation on a stored document, for a user
 *  or anonymous (`GET …/docs/{id}/explain`). */
function Explain({ slug }) {
  const [collection, setCollection] = useState("");
  const [id, setId] = useState("");
  const [uid, setUid] = useState("");
  const [op, setOp] = useState("read");
  const [result, setResult] = useState(null);
  const { busy, error, run } = useAction();
  const submit = async (e) => {
    e.preventDefault();
    setResult(null);
    const r = await run(() => admin.explainRule(slug, collection.trim(), id.trim(), { op, uid: uid.trim() }));
    if (r) setResult(r);
  };
  const notFound = error && error.status === 404 ? (error.code === "user_not_found" ? { uid: error.message } : { id: error.message }) : {};
  return html`<section aria-labelledby="explain-h">
    <h2 id="explain-h">Explain</h2>
    <p class="muted small">Which rule of the active version lets a user (or anyone, with no user id) read, update or delete a stored document, and why.</p>
    <form class="card" onSubmit=${submit} aria-labelledby="explain-h">
      <div class="row wrap">
        <${Field} label="Collection" value=${collection} onInput=${setCollection} required autocomplete="off" spellcheck="false" />
        <${Field} label="Document id" value=${id} onInput=${setId} required autocomplete="off" spellcheck="false" error=${notFound.id} />
        <${Field} label="User id (optional)" value=${uid} onInput=${setUid} autocomplete="off" spellcheck="false"
          hint="Empty: an anonymous caller." error=${notFound.uid || fieldError(error, "uid")} />
        <div class="field">
          <label for="explain-op">Operation</label>
          <select id="explain-op" value=${op} onChange=${(e) => setOp(e.target.value)}>
            ${["read", "update", "delete"].map((o) => html`<option key=${o} value=${o}>${o}</option>`)}
          </select>
        </div>
      </div>
      <button type="submit" disabled=${busy}>${busy ? "Explaining…" : "Explain"}</button>
    </form>
    ${error && error.status !== 404 && html`<${ErrorBox} error=${error} what="explain" />`}
    ${result &&
    html`<div class=${`state ${result.allowed ? "ok" : "error"}`} role="status" data-testid="explanation">
      <strong>${result.allowed ? "Allowed" : "Denied"}</strong>: ${result.operation} of ${result.collection}/${result.id}
      ${result.exists === false && html`<p>No document is stored under this id: the rule saw <code>doc == null</code>.</p>`}
      ${result.rule === null
        ? html`<p>The collection has no ${result.operation} rule, so it is denied.</p>`
        : html`<p>Rule: <code>${result.rule}</code>${result.decided_by && html`<br />Decided by: <code>${result.decided_by}</code>`}</p>`}
      ${result.trace.length > 0 &&
      html`<details><summary>Every sub-expression (${result.trace.length})</summary>
        <div class="scroll"><table><caption class="sr-only">Sub-expressions and their values</caption>
          <thead><tr><th scope="col">Expression</th><th scope="col">Value</th></tr></thead>
          <tbody>${result.trace.map((t, i) => html`<tr key=${i}><td><code>${t.expression}</code></td><td><code>${JSON.stringify(t.value)}</code></td></tr>`)}</tbody>
        </table></div></details>`}
    </div>`}
  </section>`;
}

const EXAMPLE_CASES = `[[case]]
name = "anonymous cannot read"
collection = "notes"
operation = "read"
doc = { owner = "alice" }
expect = "deny"
`;

/** Test cases run against the rule set in the editor. */
function TestCases({ slug, rules }) {
  const storeKey = `plinth.rules.cases.${slug}`;
  const [cases, setCases] = useState(() => {
    try {
      return localStorage.getItem(storeKey) ?? EXAMPLE_CASES;
    } catch {
      return EXAMPLE_CASES;
    }
  });
  const [report, setReport] = useState(null);
  const { busy, error, run, setError } = useAction();
  const edit = (v) => {
    setCases(v);
    setReport(null);
    setError(null);
    try {
      localStorage.setItem(storeKey, v);
    } catch {
      /* storage full or refused: the cases live as long as the page */
    }
  };
  const submit = async (e) => {
    e.preventDefault();
    setReport(null);
    const r = await run(() => admin.testRules(slug, rules, cases));
    if (r) setReport(r);
  };
  const failed = report ? report.cases.filter((c) => !c.passed).length : 0;
  return html`<section aria-labelledby="tests-h">
    <h2 id="tests-h">Test cases</h2>
    <p class="muted small">Cases run against the rule set in the editor above, installed or not, as <code>plinth rules test</code> runs them:
      one <code>[[case]]</code> table each, with <code>collection</code>, <code>operation</code>, <code>auth</code> (omit for anonymous),
      <code>doc</code>, <code>new</code> and <code>expect</code> (<code>allow</code> or <code>deny</code>).</p>
    <form onSubmit=${submit} aria-labelledby="tests-h">
      <label for="rules-cases" class="label">Test cases (TOML)</label>
      <${CodeEditor} id="rules-cases" testId="rules-cases" value=${cases} onInput=${edit} celKeys=${NO_CEL} describedBy="rules-keys" />
      <button type="submit" disabled=${busy || !rules.trim()}>${busy ? "Running…" : "Run tests"}</button>
    </form>
    ${error && html`<${ErrorBox} error=${error} what="run the tests" />`}
    ${report && !report.valid &&
    html`<div class="state error" role="status" data-testid="rules-test-report" data-passed="false">
      <strong>The rule set has ${report.errors.length} error${report.errors.length === 1 ? "" : "s"}; no case ran.</strong>
      <ul>${report.errors.map((e, i) => html`<li key=${i}>${place(e)}: ${e.message}</li>`)}</ul></div>`}
    ${report && report.valid &&
    html`<div class=${`state ${report.passed ? "ok" : "error"}`} role="status" data-testid="rules-test-report" data-passed=${String(report.passed)}>
      <strong>${report.cases.length === 0
        ? "No cases to run: add a [[case]] table."
        : report.passed
          ? `All ${report.cases.length} case${report.cases.length === 1 ? "" : "s"} passed.`
          : `${failed} of ${report.cases.length} case${report.cases.length === 1 ? "" : "s"} failed.`}</strong>
      ${report.cases.length > 0 &&
      html`<div class="scroll"><table><caption class="sr-only">Test case results</caption>
        <thead><tr><th scope="col">Case</th><th scope="col">Line</th><th scope="col">Expected</th><th scope="col">Actual</th><th scope="col">Result</th></tr></thead>
        <tbody>${report.cases.map((c, i) => html`<tr key=${i} data-testid="rules-test-case" data-passed=${String(c.passed)}>
          <td>${c.name}${c.detail && html`<br /><small class="muted">${c.detail}</small>`}</td><td>${c.line}</td>
          <td>${c.expected}</td><td>${c.actual}</td><td><strong>${c.passed ? "pass" : "FAIL"}</strong></td></tr>`)}</tbody>
      </table></div>`}
    </div>`}
  </section>`;
}

/** Installed versions, newest first, each but the active one with "Roll back to this". */
function History({ slug, version, onActivated }) {
  const list = useLoad(() => admin.ruleVersions(slug), [slug, version]);
  const [confirm, setConfirm] = useState(null);
  const [done, setDone] = useState(null);
  const act = useAction();
  const write = session.can("write");
  const activate = async (v) => {
    setDone(null);
    const r = await act.run(() => admin.activateRules(slug, v));
    if (r) {
      setConfirm(null);
      setDone({ from: v, version: r.version });
      onActivated();
    }
  };
  return html`<section aria-labelledby="history-h">
    <h2 id="history-h">History</h2>
    ${list.loading && !list.data && html`<${Loading} what="the versions" />`}
    <${ErrorBox} error=${list.error} what="load the versions" retry=${list.reload} />
    <${ErrorBox} error=${act.error} what="roll back" />
    ${done && html`<div class="state info" role="status" data-testid="rules-rolled-back">Version ${done.from} installed again as version ${done.version}.</div>`}
    ${list.data && list.data.items.length === 0 && html`<${Empty}>No version installed yet: each install above is kept here.</${Empty}>`}
    ${list.data && list.data.items.length > 0 &&
    html`<div class="scroll"><table>
      <caption class="sr-only">Rule set versions, newest first</caption>
      <thead><tr><th scope="col" class="num">Version</th><th scope="col">Installed</th><th scope="col">By</th><th scope="col">State</th></tr></thead>
      <tbody>${list.data.items.map((v) => html`<tr key=${v.version} data-testid="rules-version-row">
        <th scope="row" class="num">${v.version}</th><td>${fmtTime(v.created_at)}</td><td>${v.created_by}</td>
        <td>${v.active
          ? html`<span class="badge">active</span>`
          : confirm === v.version
            ? html`<span role="group" aria-label="Confirm">Install version ${v.version} again as the active set?
                <button type="button" disabled=${act.busy} onClick=${() => activate(v.version)}>Yes, roll back</button>
                <button type="button" onClick=${() => setConfirm(null)}>No</button></span>`
            : write
              ? html`<button type="button" onClick=${() => setConfirm(v.version)} aria-label=${`Roll back to this (version ${v.version})`}>Roll back to this</button>`
              : ""}</td>
      </tr>`)}</tbody>
    </table></div>`}
  </section>`;
}

function Diff({ from, to }) {
  const d = diffLines(from, to);
  if (!d) return html`<p class="muted">Too large to compare here.</p>`;
  return html`<pre class="code diff" data-testid="rules-diff" aria-label="Changes against the active version">${d.map(
    ([op, line], k) => html`<span key=${k} class=${op === "+" ? "add" : op === "-" ? "del" : ""}>${op} ${line}\n</span>`,
  )}</pre>`;
}

export function Rules({ slug }) {
  const active = useLoad(() => admin.rules(slug), [slug]);
  const [text, setText] = useState(null);
  const [installed, setInstalled] = useState(null);
  const [showDiff, setShowDiff] = useState(false);
  const install = useAction();
  const editor = useRef(null);
  const [cursor, setCursor] = useState({ line: 1, column: 1 });
  const write = session.can("write");
  // Checking and testing change nothing: a viewer edits a draft here too, and only
  // installing is left out.
  const check = useLiveCheck(slug, text, true);
  // A new active version (installed, or rolled back to) replaces the editor's text only
  // when that text was the old active version's, so an edit in progress is kept.
  const shown = useRef(null);
  useEffect(() => {
    if (!active.data) return;
    if (text === null || text === shown.current) setText(active.data.source);
    shown.current = active.data.source;
  }, [active.data]);
  const submit = async (e) => {
    e.preventDefault();
    setInstalled(null);
    const r = await install.run(() => admin.installRules(slug, text));
    if (r) {
      setInstalled(r);
      active.reload();
    }
  };
  const jump = (err) => editor.current && editor.current.focusAt(err.line, err.column);
  const errors = install.error && install.error.code === "invalid_rules" ? install.error.problem.errors || [] : null;
  const changed = active.data && text !== null && text !== active.data.source;
  const liveErrors = check && !check.stale && check.errors && check.errors.length > 0;
  // Marked in the editor: a refused install's errors, else the live check's (shown as
  // stale, not dropped, while the check of the newest text is under way).
  const marks = errors && errors.length ? marksOf(errors) : check && check.errors && check.errors.length ? marksOf(check.errors) : null;
  const marksStale = !(errors && errors.length) && Boolean(check && check.stale);
  const here = marks ? marks.filter((m) => m.line === cursor.line) : [];
  if (active.error && !active.data) return html`<h1>Rules</h1><${ErrorBox} error=${active.error} what="load the rules" retry=${active.reload} />`;
  if (!active.data || text === null) return html`<h1>Rules</h1><${Loading} what="the rules" />`;
  return html`<h1>Rules <small class="muted">of ${slug}</small></h1>
    <p class="muted">${active.data.version === 0
      ? "No rule set installed yet: every end-user request is denied. Write one below (TOML, one table per collection) and install it."
      : `Active: version ${active.data.version}.`}${" "}The language is described in docs/rules.md.${write ? "" : " You can try changes and run tests here; installing them is for an admin."}</p>
    <form onSubmit=${submit}>
      <label for="rules-source" class="label">Rule set (TOML)</label>
      <${CodeEditor} id="rules-source" testId="rules-source" boxTestId="rules-editor" handle=${editor} tall value=${text}
        placeholder=${'[notes]\nread = "auth != null && doc.owner == auth.uid"\ncreate = "auth != null && new.owner == auth.uid"'}
        invalid=${Boolean((errors && errors.length) || liveErrors)} describedBy="rules-cursor rules-keys rules-live rules-errors"
        marks=${marks} stale=${marksStale} onCursor=${setCursor}
        onInput=${(v) => { setText(v); install.setError(null); setInstalled(null); }} />
      <div class="row wrap between small">
        <span id="rules-cursor" class="muted" data-testid="rules-cursor">Line ${cursor.line}, column ${cursor.column}</span>
        <span id="rules-keys" class="muted">Tab indents; Esc then Tab leaves the editor.</span>
      </div>
      ${here.length > 0 && html`<p class="small field-error" data-testid="rules-here">Line ${cursor.line}: ${here.map((m) => m.message).join(" · ")}</p>`}
      <div id="rules-live" role="status" aria-live="polite">${!errors && html`<${LiveCheck} check=${check} jump=${jump} />`}</div>
      <div class="row wrap">
        ${write && html`<button type="submit" disabled=${install.busy || !text.trim()}>${install.busy ? "Installing…" : "Install"}</button>`}
        <button type="button" disabled=${!changed} onClick=${() => editor.current.replaceAll(active.data.source)}>Revert to the active version</button>
        <button type="button" disabled=${!changed} aria-expanded=${showDiff && changed} onClick=${() => setShowDiff(!showDiff)}>
          ${showDiff && changed ? "Hide changes" : "Show changes"}</button>
        ${changed && html`<small class="muted">Changed, not installed.</small>`}
      </div>
    </form>
    ${showDiff && changed && html`<${Diff} from=${active.data.source} to=${text} />`}
    <div id="rules-errors">
      ${errors &&
      html`<div class="state error" role="alert" data-testid="rules-errors"><strong>Not installed: ${errors.length} error${errors.length === 1 ? "" : "s"}.</strong>
        The active version stays in force.
        <${ErrorList} errors=${errors} jump=${jump} />
      </div>`}
      ${install.error && !errors && html`<${ErrorBox} error=${install.error} what="install the rules" />`}
      ${installed &&
      html`<div class="state info" role="status" data-testid="rules-installed">Installed version ${installed.version}
        (${installed.collections.length ? installed.collections.join(", ") : "no collections"}).
        ${installed.warnings.length > 0 && html`<ul>${installed.warnings.map((w, i) => html`<li key=${i}>${w}</li>`)}</ul>`}</div>`}
    </div>
    <${TestCases} slug=${slug} rules=${text} />
    ${active.data.version > 0 && html`<${Explain} slug=${slug} />`}
    <${History} slug=${slug} version=${active.data.version} onActivated=${() => { setInstalled(null); active.reload(); }} />`;
}
