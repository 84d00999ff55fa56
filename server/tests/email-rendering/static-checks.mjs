// The checks that read the HTML without rendering it: caniemail support
// (doiuse-email) and validity (html-validate). Each returns its findings as
// `Map<emailId, Set<finding>>` for the baseline comparison.

import { doIUseEmail } from "doiuse-email";
import { HtmlValidate } from "html-validate";

import config from "./html-validate.config.mjs";

/**
 * The clients of caniemail's data checked: Gmail (web and its apps),
 * Outlook (Windows' Word engine, Outlook.com's webmail is
 * `outlook.windows-mail` here, and macOS), Apple Mail (macOS, iOS) and Yahoo
 * (web). Names as doiuse-email lists them.
 */
export const CLIENTS = [
  "gmail.desktop-webmail",
  "gmail.ios",
  "gmail.android",
  "outlook.windows",
  "outlook.windows-mail",
  "outlook.macos",
  "apple-mail.macos",
  "apple-mail.ios",
  "yahoo.desktop-webmail",
];

/**
 * doiuse-email's errors (a feature the client does not support at all) as
 * `client: feature`. Partial support is counted per client in `partial`:
 * it is nearly everything MJML writes and says little on its own.
 */
export function caniemail(emails) {
  const found = new Map();
  const partial = new Map();
  for (const email of emails) {
    const result = doIUseEmail(email.html, { emailClients: CLIENTS });
    const findings = new Set();
    for (const message of result.errors) {
      findings.add(finding(message, "not supported"));
    }
    found.set(email.id, findings);
    for (const message of result.warnings) {
      const [client] = finding(message, "only partially supported").split(": ");
      partial.set(client, (partial.get(client) ?? 0) + 1);
    }
  }
  return { found, partial };
}

/** "`border-radius` is not supported by `outlook.windows`" -> "outlook.windows: border-radius". */
function finding(message, phrase) {
  const parts = new RegExp(`^\`(.+)\` is ${phrase} by \`(.+)\`$`).exec(message);
  if (parts === null) {
    throw new Error(`doiuse-email said something unexpected: ${message}`);
  }
  return `${parts[2]}: ${parts[1]}`;
}

/**
 * html-validate's errors with html-validate.config.mjs as
 * `rule-id: message`; `details` keeps where each one is, to print.
 */
export async function validate(emails) {
  const validator = new HtmlValidate(config);
  const found = new Map();
  const details = new Map();
  for (const email of emails) {
    const report = await validator.validateString(email.html, `${email.id}.html`);
    const findings = new Set();
    for (const result of report.results) {
      for (const message of result.messages) {
        const key = `${message.ruleId}: ${message.message}`;
        findings.add(key);
        details.set(`${email.id}: ${key}`, `${message.selector ?? "document"} (line ${message.line}, column ${message.column})`);
      }
    }
    found.set(email.id, findings);
  }
  return { found, details };
}
