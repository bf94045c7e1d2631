// TOML, line by line, into highlighting tokens for the code editor; the CEL inside the
// strings of rule keys (`read = "auth != null"`) gets tokens of its own. Not a parser:
// it never fails, and text it does not understand stays plain, so a half-typed line
// still shows. A line's tokens depend only on its text and the state the line before
// ends in (an open multi-line string, open brackets), which lets the editor skip lines
// that did not change. No imports: node's tests load it as it is.

/** Token classes: "" plain, "p" punctuation, "c" comment, "h" table header, "k" key,
 *  "s" string, "n" number, boolean or date; inside CEL: "ck" keyword, "co" operator,
 *  "cv" variable, "cf" function or macro, "cs" string literal, "cn" number. */
export const START = Object.freeze({ ml: "", cel: false, stack: "" });

// The keys whose strings are CEL rules (docs/rules.md: a collection's operations).
export const RULE_KEYS = new Set(["read", "create", "update", "delete"]);

const CEL_WORDS = new Set(["true", "false", "null", "in"]);
const CEL_VARS = new Set(["auth", "doc", "new", "id", "now", "version", "created_at", "updated_at"]);
const BARE_KEY = /[A-Za-z0-9_-]+/y;
const HEADER = /\[\[?[^\]#]*\]?\]?/y;
const SCALAR = /[+-]?(?:inf|nan|true|false|[0-9][0-9A-Za-z_:.+-]*)/y;
const CEL_NUMBER = /(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)u?/y;
const CEL_IDENT = /[A-Za-z_][A-Za-z0-9_]*/y;
const CEL_OP = /&&|\|\||[=!<>]=?|[?:+\-*/%]/y;
const SPACE = /[ \t]+/y;

function match(re, s, i) {
  re.lastIndex = i;
  const m = re.exec(s);
  return m ? m[0] : "";
}

/** Where a string's body that starts at `i` ends: [index after the closing delimiter
 *  (or the line's end), closed?]. Basic strings (`escapes`) skip `\x` pairs. */
function scanString(line, i, delim, escapes) {
  while (i < line.length) {
    if (escapes && line[i] === "\\") {
      i += 2;
      continue;
    }
    if (line.startsWith(delim, i)) {
      let end = i + delim.length;
      // `""""` closes a multi-line string with a quote inside it (up to two).
      for (let extra = 0; delim.length === 3 && extra < 2 && line[end] === delim[0]; extra++) end++;
      return [end, true];
    }
    i++;
  }
  return [line.length, false];
}

/** The last character before `i` that is not a space or tab. */
function lastSolid(s, i) {
  let j = i - 1;
  while (j >= 0 && (s[j] === " " || s[j] === "\t")) j--;
  return j >= 0 ? s[j] : "";
}

/** CEL source (the body of a TOML string) into `out`. In a basic TOML string (`escapes`)
 *  `\"` is a double quote of the CEL text. */
export function celTokens(src, out, escapes) {
  let i = 0;
  let plain = "";
  const flush = () => {
    if (plain) out.push(["", plain]);
    plain = "";
  };
  const push = (cls, text) => {
    flush();
    out.push([cls, text]);
    i += text.length;
  };
  while (i < src.length) {
    const ch = src[i];
    const quote = ch === "'" || ch === '"' ? ch : escapes && ch === "\\" && src[i + 1] === '"' ? '\\"' : "";
    if (quote) {
      let j = i + quote.length;
      while (j < src.length && !src.startsWith(quote, j)) j += src[j] === "\\" && quote !== '\\"' ? 2 : 1;
      push("cs", src.slice(i, Math.min(j + quote.length, src.length)));
      continue;
    }
    const num = /[0-9]/.test(ch) ? match(CEL_NUMBER, src, i) : "";
    if (num) {
      push("cn", num);
      continue;
    }
    const word = match(CEL_IDENT, src, i);
    if (word) {
      let next = i + word.length;
      while (src[next] === " " || src[next] === "\t") next++;
      const call = src[next] === "(";
      const field = lastSolid(src, i) === ".";
      if (call) push("cf", word);
      else if (field) {
        plain += word;
        i += word.length;
      } else if (CEL_WORDS.has(word)) push("ck", word);
      else if (CEL_VARS.has(word)) push("cv", word);
      else {
        plain += word;
        i += word.length;
      }
      continue;
    }
    const op = match(CEL_OP, src, i);
    if (op) {
      push("co", op);
      continue;
    }
    plain += ch;
    i++;
  }
  flush();
}

/** A string's body: CEL tokens, or one string token. */
function body(text, cel, escapes, out) {
  if (!text) return;
  if (cel) celTokens(text, out, escapes);
  else out.push(["s", text]);
}

/** A key (bare, quoted, dotted) at `i`: its tokens into `out`; [index after it, the
 *  last part's name]. */
function scanKey(line, i, out) {
  let name = "";
  for (;;) {
    const q = line[i];
    if (q === '"' || q === "'") {
      const [end] = scanString(line, i + 1, q, q === '"');
      out.push(["k", line.slice(i, end)]);
      name = line.slice(i + 1, end - 1);
      i = end;
    } else {
      const bare = match(BARE_KEY, line, i);
      if (!bare) return [i, name];
      out.push(["k", bare]);
      name = bare;
      i += bare.length;
    }
    const ws = match(SPACE, line, i);
    if (line[i + ws.length] !== ".") return [i, name];
    if (ws) out.push(["", ws]);
    out.push(["p", "."]);
    i += ws.length + 1;
    const ws2 = match(SPACE, line, i);
    if (ws2) out.push(["", ws2]);
    i += ws2.length;
  }
}

/** One line's tokens (their texts join to the line) and the state the next line starts
 *  in. `celKeys`: the keys whose string values are CEL. */
export function tokenizeLine(line, state = START, celKeys = RULE_KEYS) {
  const out = [];
  let { ml, cel, stack } = state;
  let i = 0;
  if (ml) {
    const [end, closed] = scanString(line, 0, ml, ml === '"""');
    body(line.slice(0, closed ? end - 3 : end), cel, ml === '"""', out);
    if (!closed) return { tokens: out, end: { ml, cel, stack } };
    out.push(["s", line.slice(end - 3, end)]);
    i = end;
    ml = "";
  }
  // A statement starts the line when no bracket is open: a header, a key or a comment.
  let valueCel = false;
  let expectKey = false;
  if (i === 0 && stack === "") {
    const ws = match(SPACE, line, 0);
    if (ws) out.push(["", ws]);
    i = ws.length;
    if (line[i] === "[") {
      const h = match(HEADER, line, i);
      out.push(["h", h]);
      i += h.length;
    } else if (i < line.length && line[i] !== "#") {
      const [end, name] = scanKey(line, i, out);
      i = end;
      valueCel = celKeys.has(name);
    }
  }
  while (i < line.length) {
    const ch = line[i];
    const ws = match(SPACE, line, i);
    if (ws) {
      out.push(["", ws]);
      i += ws.length;
      continue;
    }
    if (ch === "#") {
      out.push(["c", line.slice(i)]);
      break;
    }
    if (expectKey && ch !== "}") {
      const [end, name] = scanKey(line, i, out);
      expectKey = false;
      if (end > i) {
        valueCel = celKeys.has(name) && stack === "";
        i = end;
        continue;
      }
    }
    if (ch === '"' || ch === "'") {
      const delim = line.startsWith(ch.repeat(3), i) ? ch.repeat(3) : ch;
      const strCel = valueCel && stack === "";
      const [end, closed] = scanString(line, i + delim.length, delim, ch === '"');
      out.push(["s", delim]);
      body(line.slice(i + delim.length, closed ? end - delim.length : end), strCel, ch === '"', out);
      if (closed) out.push(["s", line.slice(end - delim.length, end)]);
      else if (delim.length === 3) return { tokens: out, end: { ml: delim, cel: strCel, stack } };
      i = end;
      continue;
    }
    if (ch === "[" || ch === "{") {
      stack += ch;
      expectKey = ch === "{";
      out.push(["p", ch]);
      i++;
      continue;
    }
    if (ch === "]" || ch === "}") {
      stack = stack.slice(0, -1);
      out.push(["p", ch]);
      i++;
      continue;
    }
    if (ch === "," || ch === "=") {
      expectKey = ch === "," && stack.endsWith("{");
      out.push(["p", ch]);
      i++;
      continue;
    }
    const scalar = match(SCALAR, line, i);
    if (scalar) {
      out.push(["n", scalar]);
      i += scalar.length;
      continue;
    }
    out.push(["", ch]);
    i++;
  }
  return { tokens: out, end: { ml: "", cel: false, stack } };
}

/** Every line of `text`: [{ text, tokens, start }], `start` the state it begins in
 *  (as a string, so the editor can compare it cheaply). */
export function tokenize(text, celKeys = RULE_KEYS) {
  let state = START;
  return text.split("\n").map((line) => {
    const start = `${state.ml}|${state.cel}|${state.stack}`;
    const { tokens, end } = tokenizeLine(line, state, celKeys);
    state = end;
    return { text: line, tokens, start };
  });
}
