// The console editor's TOML/CEL highlighter (console/js/toml-tokens.js), in plain node:
// it loses no text, follows multi-line strings and brackets across lines, and tells CEL
// in rule strings from other strings. No browser needed.
//
//   node --test tests/browser/toml-tokens.test.js

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";

import { tokenize, tokenizeLine } from "../../console/js/toml-tokens.js";

const root = new URL("../../", import.meta.url);
const NO_CEL = new Set();

/** [class, text] pairs of every token of `text` that has a class. */
const classed = (text, celKeys) =>
  tokenize(text, celKeys).flatMap((l) => l.tokens.filter(([c]) => c !== ""));

test("every line's tokens join back to the line, for every rule and case file", () => {
  const files = readdirSync(new URL("rules/", root)).filter((f) => f.endsWith(".toml"));
  assert.ok(files.length >= 3, files.join(" "));
  const odd = ['x = "unterminated', "[[case", "= = =", '"quoted key" = 1', "a.b . c = { d = [1, {e = 'f'}] }", "é = 'ü🙂'", 'k = """open', "still open"];
  for (const text of [...files.map((f) => readFileSync(new URL(`rules/${f}`, root), "utf8")), odd.join("\n")]) {
    for (const line of tokenize(text)) {
      assert.equal(line.tokens.map(([, t]) => t).join(""), line.text, line.text);
      assert.ok(line.tokens.every(([, t]) => t.length > 0), `no empty token in ${line.text}`);
    }
  }
});

test("a rule line: header, key, comment, and CEL inside the string", () => {
  const t = classed('[notes] # the notes\nread = "auth != null && doc.owner == \'x\' && size(doc.tags) > 2"');
  assert.deepEqual(t.slice(0, 3), [["h", "[notes]"], ["c", "# the notes"], ["k", "read"]]);
  assert.deepEqual(
    t.slice(3),
    [
      ["p", "="], ["s", '"'], ["cv", "auth"], ["co", "!="], ["ck", "null"], ["co", "&&"], ["cv", "doc"],
      ["co", "=="], ["cs", "'x'"], ["co", "&&"], ["cf", "size"], ["cv", "doc"], ["co", ">"], ["cn", "2"], ["s", '"'],
    ],
  );
  // A field named like a variable is a field (doc.auth), a method is a function.
  assert.deepEqual(classed('update = "doc.auth.startsWith(\\"a\\")"').slice(2), [["s", '"'], ["cv", "doc"], ["cf", "startsWith"], ["cs", '\\"a\\"'], ["s", '"']]);
});

test("a multi-line rule string keeps its CEL across lines, and the state ends with it", () => {
  const lines = tokenize('create = """\nauth != null\n  && size(new.x) > 0\n"""\nindexes = [["owner"]]');
  assert.deepEqual(lines[1].tokens.filter(([c]) => c), [["cv", "auth"], ["co", "!="], ["ck", "null"]]);
  assert.deepEqual(lines[2].tokens.filter(([c]) => c), [["co", "&&"], ["cf", "size"], ["cv", "new"], ["co", ">"], ["cn", "0"]]);
  assert.deepEqual(lines[3].tokens, [["s", '"""']]);
  assert.deepEqual(lines[4].tokens.filter(([c]) => c), [["k", "indexes"], ["p", "="], ["p", "["], ["p", "["], ["s", '"'], ["s", "owner"], ["s", '"'], ["p", "]"], ["p", "]"]]);
  assert.notEqual(lines[1].start, lines[4].start);
  assert.equal(lines[0].start, lines[4].start);
});

test("strings of other keys are strings; inline tables have keys; arrays continue over lines", () => {
  const t = classed('[[case]]\nname = "auth != null"\nauth = { uid = "alice", n = 2 }\nexpect = "deny"', NO_CEL);
  assert.deepEqual(t.filter(([c]) => c === "k").map(([, x]) => x), ["name", "auth", "uid", "n", "expect"]);
  assert.ok(!t.some(([c]) => c.startsWith("c") && c !== "c"), "no CEL tokens");
  assert.deepEqual(t[0], ["h", "[[case]]"]);
  // Inside a multi-line array, a line starts with values, not a key.
  const lines = tokenize('indexes = [\n  ["owner"],\n]\nread = "true"');
  assert.ok(!lines[1].tokens.some(([c]) => c === "k"));
  assert.deepEqual(lines[3].tokens.filter(([c]) => c)[0], ["k", "read"]);
  assert.deepEqual(lines[3].tokens.filter(([c]) => c).slice(2), [["s", '"'], ["ck", "true"], ["s", '"']]);
});

test("markup is only text in tokens", () => {
  const { tokens } = tokenizeLine(`read = "doc.t != '<script>alert(1)</script>'"`);
  assert.ok(tokens.some(([c, t]) => c === "cs" && t === "'<script>alert(1)</script>'"));
});
