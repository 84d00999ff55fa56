// The committed baseline (baseline.json): per check, entries of findings
// known today, the emails they are known in and why they are accepted. A
// finding is a short string ("outlook.windows: border-radius"), the same for
// every element it occurs on, and findings with one reason share an entry,
// so the file stays small. Emails are named by
// patterns over `kind.locale.user_type` in which `*` stands for one part
// (`applicant_approved.*.contractor`), or `*` alone for every email.

import { readFileSync, writeFileSync } from "node:fs";

export function loadBaseline(path) {
  return JSON.parse(readFileSync(path, "utf8"));
}

function covers(pattern, id) {
  if (pattern === "*") {
    return true;
  }
  const want = pattern.split(".");
  const have = id.split(".");
  return want.length === have.length && want.every((part, at) => part === "*" || part === have[at]);
}

/**
 * Compares what a check found (`Map<emailId, Set<finding>>`) with the
 * baseline's entries for that check: `fresh` are findings no entry covers
 * (these fail the run), `gone` says where an entry's finding no longer
 * occurs (printed, so the baseline can be tightened).
 */
export function compare(entries, found, emailIds) {
  const fresh = [];
  for (const id of emailIds) {
    for (const finding of found.get(id) ?? []) {
      const known = entries.some(
        (entry) => entry.findings.includes(finding) && entry.emails.some((pattern) => covers(pattern, id)),
      );
      if (!known) {
        fresh.push(`${id}: ${finding}`);
      }
    }
  }
  const gone = [];
  for (const entry of entries) {
    const expected = emailIds.filter((id) => entry.emails.some((pattern) => covers(pattern, id)));
    for (const finding of entry.findings) {
      const missing = expected.filter((id) => !(found.get(id) ?? new Set()).has(finding));
      if (missing.length === expected.length) {
        gone.push(`${finding}: no longer found anywhere; remove it from the baseline`);
      } else if (missing.length > 0) {
        gone.push(`${finding}: no longer found in ${missing.join(", ")}`);
      }
    }
  }
  return { fresh, gone };
}

/**
 * The entries that describe `found` exactly: `*` when a finding occurs in
 * every email, else the emails it occurs in. Findings keep the entry (and
 * so the reason) they had in `previous`; new ones share an entry per set
 * of emails, with a reason to write.
 */
export function entriesFor(previous, found, emailIds) {
  const where = new Map();
  for (const id of emailIds) {
    for (const finding of found.get(id) ?? []) {
      where.set(finding, [...(where.get(finding) ?? []), id]);
    }
  }
  const grouped = new Map();
  for (const finding of [...where.keys()].sort()) {
    const ids = where.get(finding);
    const emails = ids.length === emailIds.length ? ["*"] : ids;
    const why =
      previous.find((entry) => entry.findings.includes(finding))?.why ?? "TODO: why this is accepted";
    const key = JSON.stringify([why, emails]);
    const entry = grouped.get(key) ?? { findings: [], emails, why };
    entry.findings.push(finding);
    grouped.set(key, entry);
  }
  return [...grouped.values()];
}

export function saveBaseline(path, baseline) {
  writeFileSync(path, `${JSON.stringify(baseline, null, 2)}\n`);
}
