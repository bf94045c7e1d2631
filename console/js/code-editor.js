// A code editor with no build step and no library: a <textarea> with transparent text
// over a <pre> that shows the same text highlighted (toml-tokens.js), beside a gutter of
// line numbers. The textarea stays the real control, so the caret, selection, undo,
// input methods, spell-check off and screen readers are all the browser's own; the <pre>
// and the gutter are hidden from assistive technology. Diagnostics ({line, column,
// message}, the server's line and column in characters) mark their line in the gutter,
// underline their column and show their message after the line's end.
//
// Keys: Tab indents (two spaces; the lines of a selection), Shift+Tab outdents, Enter keeps
// the line's indentation, and Escape then Tab leaves the editor (no keyboard trap). Edits
// made here go through `insertText`, so Ctrl+Z undoes them like typing.
//
// Nothing is ever set as HTML: the text is rendered as Preact text nodes.

import { Component } from "../vendor/preact.mjs";
import { useLayoutEffect, useMemo, useRef } from "../vendor/hooks.mjs";
import { html } from "./ui.js";
import { RULE_KEYS, tokenize } from "./toml-tokens.js";

const INDENT = "  ";

// The editor's own style sheet, loaded with this module (the rules page's) rather than on
// the console's first load; importing modules wait for it, so the editor never shows
// unstyled (its text twice). Should the sheet fail to load, the text still edits, shown
// twice (the plain <pre> above the textarea).
await new Promise((resolve) => {
  const sheet = document.createElement("link");
  sheet.rel = "stylesheet";
  sheet.href = new URL("../code-editor.css", import.meta.url).href;
  sheet.onload = sheet.onerror = resolve;
  document.head.append(sheet);
});

/** The index (UTF-16) in `line` of the 1-based column `column` counted in characters,
 *  as the server counts; the line's length for a column past its end. */
export function columnIndex(line, column) {
  let index = 0;
  let col = 1;
  for (const ch of line) {
    if (col >= column) return index;
    index += ch.length;
    col++;
  }
  return line.length;
}

/** The offset in `text` of (line, column), both from 1, columns in characters. */
export function offsetOf(text, line, column) {
  const lines = text.split("\n");
  const l = Math.min(Math.max(line, 1), lines.length) - 1;
  let at = 0;
  for (let i = 0; i < l; i++) at += lines[i].length + 1;
  return at + columnIndex(lines[l], column);
}

/** (line, column) of `offset` in `text`, both from 1, the column in characters. */
export function positionOf(text, offset) {
  const before = text.slice(0, offset);
  const start = before.lastIndexOf("\n") + 1;
  let line = 1;
  for (let i = before.indexOf("\n"); i >= 0; i = before.indexOf("\n", i + 1)) line++;
  return { line, column: [...before.slice(start)].length + 1 };
}

/** Inserts `text` for the selection as typing would: undoable. */
function insert(ta, text) {
  const done = text ? document.execCommand("insertText", false, text) : document.execCommand("delete");
  if (!done) {
    // A browser without these commands: the same edit, without an undo step.
    ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, "end");
    ta.dispatchEvent(new Event("input", { bubbles: true }));
  }
}

/** Tab and Shift+Tab: indent or outdent the selected lines, or insert an indent. */
function indent(ta, outdent) {
  const v = ta.value;
  const s = ta.selectionStart;
  const e = ta.selectionEnd;
  const multi = v.slice(s, e).includes("\n");
  if (!outdent && !multi) return insert(ta, INDENT);
  const from = v.lastIndexOf("\n", s - 1) + 1;
  // A selection ending at a line's start leaves that line alone.
  let to = v.indexOf("\n", e > s && v[e - 1] === "\n" ? e - 1 : e);
  if (to < 0) to = v.length;
  const block = v.slice(from, to);
  const next = block
    .split("\n")
    .map((l) => (outdent ? l.replace(/^(?: {1,2}|\t)/, "") : INDENT + l))
    .join("\n");
  if (next === block) return undefined;
  ta.setSelectionRange(from, to);
  insert(ta, next);
  if (multi) ta.setSelectionRange(from, from + next.length);
  else {
    const at = Math.max(from, s - (block.length - next.length));
    ta.setSelectionRange(at, at);
  }
  return undefined;
}

/** `tokens` split so that [from, to) is a piece of its own: [[class, text, marked]]. */
function pieces(tokens, from, to) {
  const out = [];
  let at = 0;
  for (const [cls, text] of tokens) {
    const end = at + text.length;
    if (end <= from || at >= to) out.push([cls, text, false]);
    else {
      const a = Math.max(from, at) - at;
      const b = Math.min(to, end) - at;
      if (a > 0) out.push([cls, text.slice(0, a), false]);
      out.push([cls, text.slice(a, b), true]);
      if (b < text.length) out.push([cls, text.slice(b), false]);
    }
    at = end;
  }
  return out;
}

/** One highlighted line; rendered again only when its text, start state or marks change. */
class Line extends Component {
  shouldComponentUpdate(next) {
    return next.sig !== this.props.sig;
  }

  render({ line, marks }) {
    const { text, tokens } = line;
    let parts = tokens.map(([cls, t]) => [cls, t, false]);
    let eol = false;
    if (marks) {
      const from = columnIndex(text, marks[0].column);
      eol = from >= text.length;
      if (!eol) parts = pieces(tokens, from, from + (text.codePointAt(from) > 0xffff ? 2 : 1));
    }
    const cls = (c, marked) => [c && `t-${c}`, marked && "cm-mark"].filter(Boolean).join(" ");
    return html`<span class=${marks ? "cm-line err" : "cm-line"}>${parts.map(([c, t, marked]) =>
      c || marked ? html`<span class=${cls(c, marked)}>${t}</span>` : t,
    )}${eol && html`<span class="cm-mark"> </span>`}${marks &&
    html`<span class="cm-msg">${marks.map((m) => m.message).join(" · ")}</span>`}${!text && !marks ? " " : ""}</span>`;
  }
}

/**
 * The editor. `value` and `onInput(text)` as for a textarea; `id` (for its <label>),
 * `describedBy`, `invalid`, `placeholder` and `testId` go to the textarea. `marks`:
 * [{line, column, message}]; `stale` shows them as not yet checked against the text.
 * `onCursor({line, column})` follows the caret. `handle.current` gets `focusAt(line,
 * column)` and `replaceAll(text)` (undoable). `celKeys`: keys whose strings are CEL.
 */
export function CodeEditor({
  id, value, onInput, onCursor, marks, stale, handle, tall, invalid, describedBy, placeholder, testId, boxTestId, celKeys = RULE_KEYS,
}) {
  const input = useRef(null);
  const box = useRef(null);
  const gutter = useRef(null);
  const measure = useRef(null);
  const escaped = useRef(false);
  const lines = useMemo(() => tokenize(value, celKeys), [value, celKeys]);
  const byLine = useMemo(() => {
    const m = new Map();
    for (const d of marks || []) {
      if (!(d.line >= 1 && d.line <= lines.length)) continue;
      if (!m.has(d.line)) m.set(d.line, []);
      m.get(d.line).push(d);
    }
    return m;
  }, [marks, lines.length]);

  const report = () => {
    const ta = input.current;
    if (ta && onCursor) onCursor(positionOf(ta.value, ta.selectionDirection === "backward" ? ta.selectionStart : ta.selectionEnd));
  };

  // Keeps the caret in view: the textarea is as large as its text, and the box around it
  // scrolls (the gutter stays at its left).
  const reveal = () => {
    const ta = input.current;
    const b = box.current;
    const first = gutter.current && gutter.current.firstElementChild;
    if (!ta || !b || !first || !measure.current) return;
    if (ta.scrollTop || ta.scrollLeft) ta.scrollTop = ta.scrollLeft = 0;
    const lh = first.getBoundingClientRect().height;
    const cw = measure.current.getBoundingClientRect().width / 10;
    const cs = getComputedStyle(ta);
    const pos = ta.selectionDirection === "backward" ? ta.selectionStart : ta.selectionEnd;
    const before = ta.value.slice(0, pos);
    const row = positionOf(before, pos).line - 1;
    const col = pos - (before.lastIndexOf("\n") + 1);
    const gw = gutter.current.offsetWidth;
    const top = parseFloat(cs.paddingTop) + row * lh;
    const left = gw + parseFloat(cs.paddingLeft) + col * cw;
    if (top < b.scrollTop) b.scrollTop = Math.max(0, top - lh);
    else if (top + 2 * lh > b.scrollTop + b.clientHeight) b.scrollTop = top + 2 * lh - b.clientHeight;
    if (left - cw < b.scrollLeft + gw) b.scrollLeft = Math.max(0, left - gw - 4 * cw);
    else if (left + 2 * cw > b.scrollLeft + b.clientWidth) b.scrollLeft = left + 4 * cw - b.clientWidth;
  };

  const focusAt = (line, column) => {
    const ta = input.current;
    if (!ta) return;
    const at = offsetOf(ta.value, line, column);
    ta.focus({ preventScroll: true });
    ta.setSelectionRange(at, at);
    box.current.scrollIntoView({ block: "nearest" });
    reveal();
    report();
  };

  const replaceAll = (text) => {
    const ta = input.current;
    if (!ta || ta.value === text) return;
    ta.focus({ preventScroll: true });
    ta.select();
    insert(ta, text);
    ta.setSelectionRange(0, 0);
    reveal();
    report();
  };

  if (handle) handle.current = { focusAt, replaceAll };

  // The text grew (typing, paste): once laid out, bring the caret back into view.
  useLayoutEffect(() => {
    if (document.activeElement === input.current) reveal();
  }, [value]);

  const onKeyDown = (e) => {
    const ta = e.currentTarget;
    if (e.key === "Escape") {
      escaped.current = true;
      return;
    }
    // Shift on its way to Shift+Tab keeps an Escape pending.
    if (e.key === "Shift" || e.key === "Control" || e.key === "Alt" || e.key === "Meta") return;
    const leaving = escaped.current;
    escaped.current = false;
    if (e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.key === "Tab" && !leaving) {
      e.preventDefault();
      indent(ta, e.shiftKey);
    } else if (e.key === "Enter" && !e.shiftKey) {
      const start = ta.value.lastIndexOf("\n", ta.selectionStart - 1) + 1;
      const lead = /^[ \t]*/.exec(ta.value.slice(start, ta.selectionStart))[0];
      if (lead) {
        e.preventDefault();
        insert(ta, `\n${lead}`);
      }
    }
  };

  const classes = ["cm", tall && "tall", invalid && "invalid", stale && "stale"].filter(Boolean).join(" ");
  return html`<div class=${classes} ref=${box} data-testid=${boxTestId}>
    <div class="cm-inner">
      <div class="cm-gutter" ref=${gutter} aria-hidden="true">${lines.map((_, k) => {
        const m = byLine.get(k + 1);
        return m
          ? html`<div key=${k} class="err" data-line=${k + 1} data-mark="error" title=${m.map((d) => d.message).join("\n")}
              onClick=${() => focusAt(k + 1, m[0].column)}>${k + 1}</div>`
          : html`<div key=${k} data-line=${k + 1}>${k + 1}</div>`;
      })}</div>
      <div class="cm-body">
        <pre class="cm-hl" aria-hidden="true">${lines.map((l, k) => {
          const m = byLine.get(k + 1);
          const sig = `${l.start}\u0000${l.text}\u0000${m ? m.map((d) => `${d.column}:${d.message}`).join("\u0000") : ""}`;
          return html`<${Line} key=${k} line=${l} marks=${m} sig=${sig} />`;
        })}</pre>
        <span class="cm-measure" ref=${measure} aria-hidden="true">0000000000</span>
        <textarea id=${id} ref=${input} class="cm-input" value=${value} wrap="off" spellcheck="false" autocapitalize="off"
          autocomplete="off" placeholder=${placeholder} aria-invalid=${invalid ? "true" : undefined} aria-describedby=${describedBy}
          data-testid=${testId} onInput=${(e) => { onInput(e.target.value); report(); }} onKeyDown=${onKeyDown}
          onKeyUp=${() => { report(); reveal(); }} onClick=${report} onSelect=${report} onScroll=${reveal}></textarea>
      </div>
    </div>
  </div>`;
}
