// The console's browser tests: Debian's chromium (no browser download), one
// worker (two shared cores), every test against its own real `sesame serve`.
import { cpSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig } from "@playwright/test";

const here = dirname(fileURLToPath(import.meta.url));

// The generated protobuf code is the TypeScript client's (never edited by
// hand); a copy here lets its bare imports resolve to this package's
// node_modules.
rmSync(join(here, "gen"), { recursive: true, force: true });
cpSync(join(here, "..", "..", "clients", "typescript", "src", "gen"), join(here, "gen"), { recursive: true });

export default defineConfig({
  testDir: "tests",
  workers: 1,
  fullyParallel: false,
  retries: 0,
  forbidOnly: !!process.env["CI"],
  timeout: 90_000,
  expect: { timeout: 15_000 },
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    headless: true,
    trace: "off",
    screenshot: "off",
    video: "off",
    locale: "en-GB",
    actionTimeout: 15_000,
    navigationTimeout: 15_000,
    launchOptions: {
      executablePath: process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium",
      args: ["--no-sandbox"],
    },
  },
});
