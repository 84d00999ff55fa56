// Starts the real sesame binary for the tests: a fresh temporary directory,
// a SQLite database in it, a free port, the admin key from the first start,
// SIGTERM at teardown, and the server's log for failing tests.

import { spawn, execFile, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { test, type TestContext } from "node:test";
import { UserType } from "@sesame/client";

const execFileAsync = promisify(execFile);

/** clients/typescript, from dist-test/test/server.js. */
export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The sesame binary: $SESAME_BIN, else ../../target/debug/sesame from clients/typescript. */
export function sesameBin(): string {
  const fromEnv = process.env["SESAME_BIN"];
  const bin = fromEnv ? resolve(fromEnv) : resolve(packageRoot, "..", "..", "target", "debug", "sesame");
  if (!existsSync(bin)) {
    throw new Error(
      `sesame server binary not found at ${bin}: build it (cargo build --bin sesame at the repository root) ` +
        `or set SESAME_BIN to its path. These tests need the real server and are never skipped.`,
    );
  }
  return bin;
}

const keyPattern = /sesame_[A-Za-z0-9_-]+/;
const listeningPattern = /sesame listening.*addr=([0-9.]+):(\d+)/;

export class SesameServer {
  readonly bin: string;
  readonly dir: string;
  readonly databaseUrl: string;
  port = 0;
  adminKey = "";
  #child: ChildProcess | undefined;
  #log: string[] = [];

  private constructor() {
    this.bin = sesameBin();
    this.dir = mkdtempSync(join(tmpdir(), "sesame-ts-"));
    this.databaseUrl = `sqlite://${join(this.dir, "sesame.db")}`;
  }

  /** Starts a server on a fresh database and a free port. */
  static async start(): Promise<SesameServer> {
    const server = new SesameServer();
    try {
      await server.start();
      if (!server.adminKey) {
        server.dumpLog();
        throw new Error("sesame printed no admin key on its first start");
      }
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.#child !== undefined;
  }

  /** Starts (or restarts) the server, on the same port once it has one. */
  async start(): Promise<void> {
    if (this.#child) {
      throw new Error("sesame is already running");
    }
    // RUST_LOG would win over --log-filter: drop it so "sesame listening" is logged.
    const { RUST_LOG: _ignored, ...env } = process.env;
    const child = spawn(
      this.bin,
      [
        "--log-filter",
        "info",
        "serve",
        "--listen",
        `127.0.0.1:${this.port}`,
        "--database-url",
        this.databaseUrl,
      ],
      {
        cwd: this.dir,
        env: { ...env, SESAME_MAIL_TRANSPORT: "log", NO_COLOR: "1" },
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    this.#child = child;
    this.#log.push(`--- sesame serve (pid ${child.pid}) ---`);
    child.stdout!.setEncoding("utf8");
    child.stderr!.setEncoding("utf8");
    child.stdout!.on("data", (chunk: string) => {
      this.#log.push(chunk);
      const key = keyPattern.exec(chunk);
      if (key && !this.adminKey) {
        this.adminKey = key[0];
      }
    });
    const listening = new Promise<number>((resolvePort, reject) => {
      let stderr = "";
      const onData = (chunk: string) => {
        this.#log.push(chunk);
        stderr += chunk;
        const match = listeningPattern.exec(stderr);
        if (match) {
          resolvePort(Number(match[2]));
        }
      };
      child.stderr!.on("data", onData);
      child.once("exit", (code, signal) => {
        this.#child = undefined;
        reject(new Error(`sesame exited before listening (code ${code}, signal ${signal})`));
      });
      setTimeout(() => reject(new Error("sesame did not listen within 30 s")), 30_000).unref();
    });
    try {
      this.port = await listening;
    } catch (err) {
      this.dumpLog();
      await this.stop();
      throw err;
    }
    child.on("exit", () => {
      if (this.#child === child) {
        this.#child = undefined;
      }
    });
  }

  /** SIGTERM, then waits for the process to exit (SIGKILL after 15 s). */
  async stop(): Promise<void> {
    const child = this.#child;
    if (!child) {
      return;
    }
    const exited = new Promise<void>((resolveExit) => {
      if (child.exitCode !== null || child.signalCode !== null) {
        resolveExit();
      } else {
        child.once("exit", () => resolveExit());
      }
    });
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    await exited;
    clearTimeout(timer);
    this.#child = undefined;
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the server and removes its directory. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Creates another API key with `sesame keys create` and returns it. */
  async createKey(name: string, role: "submitter" | "admin" | "auditor"): Promise<string> {
    const { stdout } = await execFileAsync(
      this.bin,
      ["--database-url", this.databaseUrl, "keys", "create", "--name", name, "--role", role],
      { cwd: this.dir, env: { ...process.env, SESAME_MAIL_TRANSPORT: "log", NO_COLOR: "1" } },
    );
    const key = keyPattern.exec(stdout);
    if (!key) {
      throw new Error(`sesame keys create printed no key: ${stdout}`);
    }
    return key[0];
  }

  log(): string {
    return this.#log.join("");
  }

  dumpLog(): void {
    process.stderr.write(`\n===== sesame server log (${this.dir}) =====\n${this.log()}\n===== end of sesame log =====\n`);
  }
}

/**
 * A node:test test that prints the server's log when it fails.
 */
export function serverTest(
  name: string,
  server: () => SesameServer | undefined,
  fn: (t: TestContext) => Promise<void>,
  timeoutMs = 60_000,
): void {
  test(name, { timeout: timeoutMs }, async (t) => {
    try {
      await fn(t);
    } catch (err) {
      server()?.dumpLog();
      throw err;
    }
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A valid SubmitAccessRequest payload. */
export function submission(requestId = "", resource = "vpn-paris") {
  return {
    applicant: { email: "ada@example.com", fullName: "Ada Lovelace", organization: "Analytical Engines" },
    userType: UserType.PARTNER,
    resource,
    justification: "Maintenance of the difference engine",
    consent: { version: "2026-01", purposes: ["access_management"] },
    requestId,
  };
}

/** clients/testing/delay_proxy.py, shared by every client's tests. */
export const delayProxyScript = resolve(packageRoot, "..", "testing", "delay_proxy.py");

/**
 * The delay proxy in front of `target` (`host:port`): on its first connection
 * the server's answers are held `holdMs` from the client's first request on
 * (see the script's header). `close()` stops it.
 */
export class DelayProxy {
  readonly url: string;
  readonly #child: ChildProcess;

  private constructor(url: string, child: ChildProcess) {
    this.url = url;
    this.#child = child;
  }

  static async start(target: string, holdMs: number): Promise<DelayProxy> {
    const dir = mkdtempSync(join(tmpdir(), "sesame-ts-proxy-"));
    const portFile = join(dir, "port");
    const child = spawn("python3", [delayProxyScript, portFile, target, String(holdMs)], {
      stdio: ["ignore", "ignore", "inherit"],
    });
    const started = Date.now();
    while (!existsSync(portFile)) {
      if (child.exitCode !== null || Date.now() - started > 20_000) {
        child.kill("SIGTERM");
        throw new Error("the delay proxy wrote no port");
      }
      await sleep(20);
    }
    const port = readFileSync(portFile, "utf8").trim();
    rmSync(dir, { recursive: true, force: true });
    return new DelayProxy(`http://127.0.0.1:${port}`, child);
  }

  async close(): Promise<void> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) {
      return;
    }
    const exited = new Promise((r) => this.#child.once("exit", r));
    this.#child.kill("SIGTERM");
    await exited;
  }
}
