// Runs examples/quickstart.mjs (the example shown in the README) against the
// real server as a subprocess, so the example cannot rot.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before } from "node:test";
import { promisify } from "node:util";
import { packageRoot, SesameServer, serverTest } from "./server.js";

const execFileAsync = promisify(execFile);
const example = join(packageRoot, "examples", "quickstart.mjs");

let server: SesameServer | undefined;

before(async () => {
  server = await SesameServer.start();
});

after(async () => {
  await server?.close();
});

serverTest("examples/quickstart.mjs submits, approves and prints both events", () => server, async () => {
  const { stdout, stderr } = await execFileAsync(process.execPath, [example], {
    cwd: packageRoot,
    env: {
      ...process.env,
      SESAME_URL: server!.url,
      SESAME_SUBMITTER_KEY: await server!.createKey("backend", "submitter"),
      SESAME_ADMIN_KEY: server!.adminKey,
    },
    timeout: 30_000, // it must exit by itself
  });
  assert.equal(stderr, "");
  const lines = stdout.trim().split("\n");
  assert.equal(lines.length, 2, stdout);
  assert.match(lines[0]!, /^#\d+ REQUEST_SUBMITTED accessRequests\/[0-9a-f-]{36} by backend$/);
  assert.match(lines[1]!, /^#\d+ REQUEST_APPROVED accessRequests\/[0-9a-f-]{36} by bootstrap-admin$/);
  assert.equal(lines[0]!.split(" ")[2], lines[1]!.split(" ")[2], "both events are about the same request");
});

serverTest("the README shows examples/quickstart.mjs verbatim", () => server, async () => {
  const readme = readFileSync(join(packageRoot, "README.md"), "utf8");
  const code = readFileSync(example, "utf8");
  assert.ok(readme.includes("```js\n" + code + "```"), "README.md must contain examples/quickstart.mjs in a js block");
});
