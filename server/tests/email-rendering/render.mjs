// Renders every email with the real binary: `sesame templates render` for
// each kind (as the binary lists them) x locale x user type, from an empty
// working directory and without SESAME_* variables, so that the embedded
// default configuration and the built-in templates are what is checked
// (EMAIL_RENDERING_TEMPLATES_DIR adds a template directory over them).

import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const LOCALES = ["en", "fr"];
// proto/sesame/v1/access_request.proto, UserType (UNSPECIFIED aside).
export const USER_TYPES = ["employee", "partner", "customer", "contractor"];

/**
 * The gateway code the approved emails are rendered with, so that the
 * layout check knows what to look for. The production format: 24
 * characters in groups of four.
 */
export const GATEWAY_CODE = "7WMX-QH4K-Z9RT-B2NV-JC8P-Y3DF";

/** The resource every email names, looked for in each part. */
export const RESOURCE = "vpn-paris";

/** Values merged over the binary's sample values. */
const DATA = { gateway_code: GATEWAY_CODE, resource: RESOURCE };

/**
 * Every email: `{ id, kind, locale, userType, subject, text, html }`, the
 * id being `kind.locale.user_type`.
 */
export function renderAll(bin) {
  const workDir = mkdtempSync(join(tmpdir(), "sesame-email-rendering-"));
  try {
    const dataFile = join(workDir, "data.json");
    writeFileSync(dataFile, JSON.stringify(DATA));
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith("SESAME_")),
    );
    // To check a deployment's own templates (or a broken copy, to see a
    // check fail): a directory that overrides the built-in files.
    if (process.env.EMAIL_RENDERING_TEMPLATES_DIR) {
      env.SESAME_MAIL_TEMPLATES_DIR = process.env.EMAIL_RENDERING_TEMPLATES_DIR;
    }
    const run = (args) =>
      execFileSync(bin, ["templates", "render", ...args], {
        cwd: workDir,
        env,
        encoding: "utf8",
        maxBuffer: 16 * 1024 * 1024,
      });
    const emails = [];
    for (const kind of kinds(bin, workDir, env)) {
      for (const locale of LOCALES) {
        for (const userType of USER_TYPES) {
          const common = [kind, "--locale", locale, "--user-type", userType, "--data", dataFile];
          // println! adds one newline to each part.
          const part = (name) => run([...common, "--part", name]).replace(/\n$/, "");
          emails.push({
            id: `${kind}.${locale}.${userType}`,
            kind,
            locale,
            userType,
            subject: part("subject"),
            text: part("text"),
            html: part("html"),
          });
        }
      }
    }
    return emails;
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

/**
 * The kinds of email, read from the binary's own refusal of an unknown
 * kind ("expected one of a, b, c"), so a new kind is checked without
 * touching this file.
 */
function kinds(bin, cwd, env) {
  const refused = spawnSync(bin, ["templates", "render", "no-such-kind"], {
    cwd,
    env,
    encoding: "utf8",
  });
  const list = /expected one of ([a-z_, ]+)/.exec(refused.stderr ?? "");
  if (refused.status === 0 || list === null) {
    throw new Error(
      `could not read the email kinds from \`sesame templates render no-such-kind\`:\n${refused.stderr}`,
    );
  }
  return list[1].split(",").map((kind) => kind.trim());
}

/**
 * What the rendered parts must satisfy whatever the client: problems as
 * strings. Gmail clips a message whose HTML is over 102 KB (a "View entire
 * message" link hides the rest).
 */
export function partProblems(email) {
  const problems = [];
  const say = (problem) => problems.push(`${email.id}: ${problem}`);
  if (email.subject.trim() === "" || email.subject.includes("\n")) {
    say(`the subject must be one non-empty line, got ${JSON.stringify(email.subject)}`);
  }
  for (const [name, value] of [["subject", email.subject], ["text", email.text], ["html", email.html]]) {
    if (/\{\{|\{%|%\}|\}\}/.test(value)) {
      say(`the ${name} part holds unrendered template syntax`);
    }
  }
  if (!email.text.includes(RESOURCE) || !email.html.includes(RESOURCE)) {
    say("the text and HTML parts must both name the resource");
  }
  if (email.kind === "applicant_approved") {
    if (!email.text.includes(GATEWAY_CODE) || !email.html.includes(GATEWAY_CODE)) {
      say("the text and HTML parts must both hold the gateway code");
    }
  }
  if (!email.html.includes(`lang="${email.locale}"`)) {
    say(`the HTML must declare lang="${email.locale}"`);
  }
  const bytes = Buffer.byteLength(email.html, "utf8");
  if (bytes > 102 * 1024) {
    say(`the HTML is ${bytes} bytes: Gmail clips messages over 102 KB`);
  }
  return problems;
}
