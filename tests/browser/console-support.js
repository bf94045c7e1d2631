// Shared by the console's browser tests (not a test file itself: node --test runs only
// *.test.js here): a fresh PostgreSQL database, the axe-core audit and the phone-width check.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/** A fresh database on the PostgreSQL of TEST_POSTGRES_URL (made with psql), or null. */
export function postgresUrl(prefix = "console") {
  const base = process.env.TEST_POSTGRES_URL;
  if (!base) return null;
  const dirs = existsSync("/usr/lib/postgresql") ? readdirSync("/usr/lib/postgresql").sort().reverse() : [];
  const psql = dirs.map((v) => `/usr/lib/postgresql/${v}/bin/psql`).find(existsSync) || "psql";
  const db = `${prefix}_${process.pid}_${Date.now()}`;
  execFileSync(psql, [base, "-q", "-c", `CREATE DATABASE ${db}`], { stdio: "pipe" });
  const url = new URL(base);
  url.pathname = `/${db}`;
  return url.toString();
}

/** axe-core on the page as it is: no serious or critical violation. */
export async function axeCheck(page, what) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations);
  const bad = violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(bad, [], `axe on ${what}`);
}

/** The page is no wider than a 360 px phone screen. */
export async function fitsAPhone(page, what) {
  const before = page.viewportSize();
  await page.setViewportSize({ width: 360, height: 780 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize(before);
  assert.ok(overflow <= 0, `${what} is ${overflow}px wider than a 360px screen`);
}
