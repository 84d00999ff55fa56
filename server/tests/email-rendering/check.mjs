// Rendering checks of every email Sesame sends (see test.sh and
// docs/email-style.md): renders them with $SESAME_BIN, then checks the parts,
// caniemail support, HTML validity and the layout in Chromium. Findings in
// baseline.json are accepted; a new one fails the run, one that went away is
// printed so the baseline can be tightened. UPDATE_BASELINE=1 rewrites
// baseline.json from this run (keeping the reasons; write the new ones).
// The last line is the summary server/tests/it/email_rendering.rs reads.

import { mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { compare, entriesFor, loadBaseline, saveBaseline } from "./baseline.mjs";
import { checkLayout } from "./layout.mjs";
import { partProblems, renderAll } from "./render.mjs";
import { caniemail, validate } from "./static-checks.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const baselinePath = join(here, "baseline.json");
const outDir = resolve(process.env.EMAIL_RENDERING_OUT ?? join(here, "out"));
const bin = process.env.SESAME_BIN;
const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
if (!bin) {
  throw new Error("SESAME_BIN must name the sesame binary (test.sh sets it)");
}

const started = Date.now();
const failures = [];
const section = (title) => console.log(`\n== ${title}`);
const list = (lines) => lines.forEach((line) => console.log(`  ${line}`));

const emails = renderAll(bin);
const ids = emails.map((email) => email.id);
section(`rendered ${emails.length} emails (kind x locale x user type) with ${bin}`);
const partFailures = emails.flatMap(partProblems);
list(partFailures);
failures.push(...partFailures);

const baseline = loadBaseline(baselinePath);
const support = caniemail(emails);
const validity = await validate(emails);
if (process.env.UPDATE_BASELINE) {
  baseline.caniemail = entriesFor(baseline.caniemail, support.found, ids);
  baseline["html-validate"] = entriesFor(baseline["html-validate"], validity.found, ids);
  saveBaseline(baselinePath, baseline);
  console.log(`\nrewrote ${baselinePath}: review it and give every new entry its reason`);
}

section("caniemail support (doiuse-email): features a client does not support at all");
const supportDiff = compare(baseline.caniemail, support.found, ids);
list(supportDiff.fresh.map((line) => `NEW ${line}`));
list(supportDiff.gone.map((line) => `gone: ${line}`));
failures.push(...supportDiff.fresh);
console.log(
  `  partial support (not baselined): ${[...support.partial].map(([client, count]) => `${client} ${count}`).join(", ")}`,
);

section("HTML validity (html-validate, html-validate.config.mjs)");
const validityDiff = compare(baseline["html-validate"], validity.found, ids);
list(validityDiff.fresh.map((line) => `NEW ${line} at ${validity.details.get(line)}`));
list(validityDiff.gone.map((line) => `gone: ${line}`));
failures.push(...validityDiff.fresh);

section("layout in Chromium: screenshots, overflow, the code, resource and links visible");
mkdirSync(outDir, { recursive: true });
const layout = await checkLayout(emails, { executablePath, outDir });
list(layout.problems);
list(layout.notes.map((note) => `note: ${note}`));
failures.push(...layout.problems);
console.log(`  ${layout.shots} screenshots in ${layout.screenshots}`);

const seconds = ((Date.now() - started) / 1000).toFixed(1);
const known = [...baseline.caniemail, ...baseline["html-validate"]].reduce(
  (count, entry) => count + entry.findings.length,
  0,
);
console.log(
  `\nemail rendering: ${emails.length} emails, ${layout.shots} screenshots, ${known} baselined findings, ${failures.length} failed (${seconds} s)`,
);
process.exitCode = failures.length === 0 ? 0 : 1;
