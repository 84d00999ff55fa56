// Playwright fixtures: every test gets its own SMTP server and `sesame serve`
// on a fresh database (a second or so to start), the API keys of a small
// team, gRPC clients, and helpers to sign in and to run axe-core.

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { test as base, expect, type Locator, type Page, type TestInfo } from "@playwright/test";
import { Api, type Clients } from "./api.js";
import { removeDir, SesameServer, SmtpServer, tempDir } from "./harness.js";

export interface Keys {
  /** Admin "alice". */
  alice: string;
  /** Admin "bob". */
  bob: string;
  /** Auditor "carol". */
  carol: string;
  /** Submitter "intake-service", the backend that submits requests. */
  submitter: string;
}

export interface Env {
  smtp: SmtpServer;
  sesame: SesameServer;
  keys: Keys;
  api: Api;
  /** gRPC as the submitter service. */
  submitter: Clients;
  /** gRPC as admin "bob" (changes made "elsewhere"). */
  bob: Clients;
  /** Stops sesame and starts it again on the same database and port. */
  restart(): Promise<void>;
}

async function startEnv(testInfo: TestInfo): Promise<{ env: Env; dir: string }> {
  const dir = tempDir();
  const smtp = await SmtpServer.start(dir);
  let sesame: SesameServer | undefined;
  try {
    sesame = await SesameServer.start(dir, smtp);
    const [alice, bob, carol, submitterKey] = await Promise.all([
      sesame.createKey("alice", "admin"),
      sesame.createKey("bob", "admin"),
      sesame.createKey("carol", "auditor"),
      sesame.createKey("intake-service", "submitter"),
    ]);
    const server = sesame;
    const api = new Api(() => server.url);
    const env: Env = {
      smtp,
      sesame: server,
      keys: { alice, bob, carol, submitter: submitterKey },
      api,
      submitter: api.as(submitterKey),
      bob: api.as(bob),
      async restart() {
        api.close();
        await server.stop();
        await server.start();
        env.submitter = api.as(submitterKey);
        env.bob = api.as(bob);
      },
    };
    return { env, dir };
  } catch (err) {
    testInfo.attach("sesame.log", { body: sesame?.log() ?? "", contentType: "text/plain" }).catch(() => {});
    await sesame?.stop();
    await smtp.stop();
    removeDir(dir);
    throw err;
  }
}

export const test = base.extend<{ env: Env }>({
  env: async ({}, use, testInfo) => {
    const { env, dir } = await startEnv(testInfo);
    try {
      await use(env);
    } finally {
      if (testInfo.status !== testInfo.expectedStatus) {
        // The server's and SMTP server's logs explain most failures.
        process.stderr.write(`\n===== sesame log (${testInfo.title}) =====\n${env.sesame.log()}\n===== smtp log =====\n${env.smtp.log()}\n===== end =====\n`);
      }
      env.api.close();
      await env.sesame.stop();
      await env.smtp.stop();
      removeDir(dir);
    }
  },
});

export { expect };

/** Opens the console and signs in with `key`; waits for the queue and the live stream. */
export async function signIn(page: Page, env: Env, key: string): Promise<void> {
  await page.goto(env.sesame.url + "/");
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Queue" })).toBeVisible();
  await expect(connection(page)).toHaveText(/live$/);
}

/** The header's connection state ("Live updates: live" in English). */
export function connection(page: Page): Locator {
  return page.locator("header").getByRole("status");
}

/** The queue table's row of an applicant. */
export function queueRow(page: Page, email: string): Locator {
  return page.getByRole("row").filter({ hasText: email });
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  helpUrl: string;
  nodes: { target: unknown[]; html: string; failureSummary?: string }[];
}

/**
 * Runs axe-core on the page as it is and fails on a serious or critical
 * violation, printing each one. The page's CSP forbids inline scripts, so
 * axe is evaluated through the DevTools protocol (as @axe-core/playwright does).
 */
export async function expectNoSeriousA11yViolations(page: Page, screen: string): Promise<void> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const axe = (window as unknown as { axe: { run: (ctx: Document, opts: object) => Promise<{ violations: unknown[] }> } }).axe;
    const result = await axe.run(document, { resultTypes: ["violations"] });
    return result.violations as unknown[];
  }) as AxeViolation[];
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const report = bad
    .map(
      (v) =>
        `[${v.impact}] ${v.id}: ${v.help} (${v.helpUrl})\n` +
        v.nodes.map((n) => `    ${JSON.stringify(n.target)} ${n.html}\n      ${(n.failureSummary ?? "").replace(/\n/g, "\n      ")}`).join("\n"),
    )
    .join("\n");
  expect(bad, `axe-core on ${screen}:\n${report}`).toEqual([]);
}
