// The real things the browser tests run against: the SMTP server of the
// server's mail tests (Python, aiosmtpd) and the `sesame` binary serving the
// console, on a temporary SQLite database, with API keys made by
// `sesame keys create`. Nothing here is mocked.

import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** The repository root, from console/e2e/support. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/** The sesame binary: $SESAME_BIN, else target/debug/sesame at the repository root. */
export function sesameBin(): string {
  const fromEnv = process.env["SESAME_BIN"];
  const bin = fromEnv ? resolve(fromEnv) : join(repoRoot, "target", "debug", "sesame");
  if (!existsSync(bin)) {
    throw new Error(
      `sesame binary not found at ${bin}: build it (cargo build --bin sesame) or set SESAME_BIN. ` +
        `The browser tests need the real server and are never skipped.`,
    );
  }
  return bin;
}

/** Resolves when `check` returns a value other than undefined; polls every `everyMs`. */
export async function waitFor<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** One received email: its file and raw text. */
export interface ReceivedMail {
  file: string;
  raw: string;
}

/** server/tests/support/smtp_server.py: accepts or refuses each message as its plan file says. */
export class SmtpServer {
  readonly mailDir: string;
  readonly planFile: string;
  port = 0;
  #child: ChildProcess | undefined;
  #log: string[] = [];

  private constructor(readonly dir: string) {
    this.mailDir = join(dir, "mail");
    this.planFile = join(dir, "smtp-plan");
  }

  static async start(dir: string): Promise<SmtpServer> {
    try {
      execFileSync("python3", ["-c", "import aiosmtpd"], { stdio: "pipe" });
    } catch {
      throw new Error(
        "python3 with aiosmtpd is required by the console's browser tests (a real SMTP server): " +
          "install it (apt-get install python3-aiosmtpd, or pip install aiosmtpd). These tests are never skipped.",
      );
    }
    const smtp = new SmtpServer(dir);
    mkdirSync(smtp.mailDir, { recursive: true });
    const portFile = join(dir, "smtp-port");
    const script = join(repoRoot, "server", "tests", "support", "smtp_server.py");
    const child = spawn("python3", [script, portFile, smtp.mailDir, smtp.planFile], { stdio: ["pipe", "pipe", "pipe"] });
    smtp.#child = child;
    child.stdout!.setEncoding("utf8").on("data", (c: string) => smtp.#log.push(c));
    child.stderr!.setEncoding("utf8").on("data", (c: string) => smtp.#log.push(c));
    let exited = false;
    child.once("exit", () => (exited = true));
    const port = await waitFor("the SMTP server's port file", () => {
      if (exited) throw new Error(`the SMTP server exited at start: ${smtp.#log.join("")}`);
      return existsSync(portFile) ? Number(readFileSync(portFile, "utf8")) : undefined;
    });
    smtp.port = port;
    return smtp;
  }

  /** Replies of the next messages, e.g. ["550"]; an empty plan accepts everything. */
  plan(replies: string[]): void {
    writeFileSync(this.planFile, replies.join(","));
  }

  /** Every message received so far. */
  received(): ReceivedMail[] {
    return readdirSync(this.mailDir)
      .filter((f) => f.endsWith(".eml"))
      .map((f) => ({ file: f, raw: readFileSync(join(this.mailDir, f), "utf8") }));
  }

  /** Messages whose To is `address`. */
  receivedFor(address: string): ReceivedMail[] {
    const to = new RegExp(`^To:.*${address.replace(/[.+]/g, "\\$&")}`, "im");
    return this.received().filter((m) => to.test(m.raw));
  }

  /** Waits for `count` messages to `address` (and returns them). */
  async waitForMail(address: string, count = 1, timeoutMs = 20_000): Promise<ReceivedMail[]> {
    return waitFor(`${count} email(s) to ${address} in ${this.mailDir}`, () => {
      const mails = this.receivedFor(address);
      return mails.length >= count ? mails : undefined;
    }, timeoutMs);
  }

  async stop(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    child.stdin!.end();
    const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }

  log(): string {
    return this.#log.join("");
  }
}

export type Role = "admin" | "auditor" | "submitter";

const keyPattern = /sesame_[A-Za-z0-9_-]+/;
const listeningPattern = /sesame listening.*addr=([0-9.]+):(\d+)/;

/** `sesame serve` on a temporary SQLite database, with the mail worker sending to `smtp`. */
export class SesameServer {
  readonly bin = sesameBin();
  readonly databaseUrl: string;
  port = 0;
  bootstrapAdminKey = "";
  /** Settings over the defaults below, for a test's next start (`restart`). */
  overrides: Record<string, string> = {};
  #child: ChildProcess | undefined;
  #log: string[] = [];

  private constructor(readonly dir: string, readonly smtp: SmtpServer) {
    this.databaseUrl = `sqlite://${join(dir, "sesame.db")}`;
  }

  static async start(dir: string, smtp: SmtpServer): Promise<SesameServer> {
    const server = new SesameServer(dir, smtp);
    await server.start();
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The environment of every sesame command: only the test's own SESAME_* settings. */
  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const [name, value] of Object.entries(process.env)) {
      // RUST_LOG would win over --log-filter; SESAME_* of the caller (SESAME_BIN
      // included) are not this server's configuration.
      if (name === "RUST_LOG" || name.startsWith("SESAME_")) continue;
      env[name] = value;
    }
    return {
      ...env,
      NO_COLOR: "1",
      SESAME_MAIL_TRANSPORT: `smtp://127.0.0.1:${this.smtp.port}`,
      SESAME_MAIL_WORKER: "true",
      SESAME_MAIL_FROM: "Sesame <sesame@example.com>",
      // Fast retries and polls: a failing email is tried again within a second or two.
      SESAME_MAIL_RETRY_SCHEDULE_SECS: "[1]",
      SESAME_MAIL_POLL_INTERVAL_MS: "100",
      SESAME_MAIL_TIMEOUT_SECS: "10",
      SESAME_EVENT_POLL_INTERVAL_MS: "200",
      SESAME_WATCH_HEARTBEAT_SECS: "2",
      SESAME_SHUTDOWN_GRACE_SECS: "1",
      ...this.overrides,
    };
  }

  /** Starts (or restarts) the server, on the same port once it has one. */
  async start(): Promise<void> {
    if (this.#child) throw new Error("sesame is already running");
    const child = spawn(
      this.bin,
      ["--log-filter", "info", "serve", "--listen", `127.0.0.1:${this.port}`, "--database-url", this.databaseUrl],
      { cwd: this.dir, env: this.env(), stdio: ["ignore", "pipe", "pipe"] },
    );
    this.#child = child;
    this.#log.push(`--- sesame serve (pid ${child.pid}) ---\n`);
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
      this.#log.push(chunk);
      const key = keyPattern.exec(chunk);
      if (key && !this.bootstrapAdminKey) this.bootstrapAdminKey = key[0];
    });
    const listening = new Promise<number>((resolvePort, reject) => {
      let stderr = "";
      child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
        this.#log.push(chunk);
        stderr += chunk;
        const match = listeningPattern.exec(stderr);
        if (match) resolvePort(Number(match[2]));
      });
      child.once("exit", (code, signal) => reject(new Error(`sesame exited before listening (code ${code}, signal ${signal})`)));
      setTimeout(() => reject(new Error("sesame did not listen within 30 s")), 30_000).unref();
    });
    child.once("exit", () => {
      if (this.#child === child) this.#child = undefined;
    });
    try {
      this.port = await listening;
    } catch (err) {
      await this.stop();
      throw new Error(`${(err as Error).message}\n${this.log()}`);
    }
  }

  /** SIGTERM, then waits for the exit (SIGKILL after 15 s). */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) return;
    const exited = new Promise<void>((r) => {
      if (child.exitCode !== null || child.signalCode !== null) r();
      else child.once("exit", () => r());
    });
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
    this.#child = undefined;
  }

  /** Creates an API key with `sesame keys create` (same database and configuration). */
  async createKey(name: string, role: Role): Promise<string> {
    const { stdout } = await execFileAsync(
      this.bin,
      ["--database-url", this.databaseUrl, "keys", "create", "--name", name, "--role", role],
      { cwd: this.dir, env: this.env() },
    );
    const key = keyPattern.exec(stdout);
    if (!key) throw new Error(`sesame keys create printed no key: ${stdout}`);
    return key[0];
  }

  log(): string {
    return this.#log.join("");
  }
}

/** A fresh temporary directory for one test's servers. */
export function tempDir(): string {
  return mkdtempSync(join(tmpdir(), "sesame-console-e2e-"));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
