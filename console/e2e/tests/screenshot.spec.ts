// The README's screenshot (docs/console.png): the queue at 1280x800, light
// theme, with a few realistic requests. Written to docs/ only with
// UPDATE_SCREENSHOT=1; otherwise into test-results, so the test still checks
// that the wide layout renders the rows.
import { join } from "node:path";
import { UserType } from "../gen/sesame/v1/access_request_pb.js";
import { applicant, submit } from "../support/api.js";
import { repoRoot } from "../support/harness.js";
import { expect, queueRow, signIn, test } from "../support/fixtures.js";

test.use({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });

test("screenshot of the queue for the README", async ({ page, env }) => {
  const requests = [
    [applicant("Ada", "Lovelace", "Analytical Engines", "ada@analytical.example"), "vpn-paris", "Maintenance of the difference engine", UserType.PARTNER],
    [applicant("Grace", "Hopper", "US Navy", "grace.hopper@navy.example"), "build-farm", "Nightly compiler builds", UserType.CONTRACTOR],
    [applicant("Alan", "Turing", "Bletchley Park", "alan@bletchley.example"), "bombe-room", "Weekly rotor settings", UserType.EMPLOYEE],
    [applicant("Katherine", "Johnson", "NASA Langley", "kjohnson@langley.example"), "orbit-calc", "Trajectory checks for the next launch", UserType.EMPLOYEE],
    [applicant("Hedy", "Lamarr", "Frequency Hopping Ltd", "hedy@fh.example"), "radio-lab", "Spread-spectrum field tests", UserType.CUSTOMER],
  ] as const;
  for (const [who, resource, why, userType] of requests) await submit(env.submitter, who, resource, why, userType);

  await signIn(page, env, env.keys.alice);
  for (const [who] of requests) await expect(queueRow(page, who.email)).toHaveCount(1);
  await expect(page.getByText("5 requests shown")).toBeVisible();
  await expect(page.getByText("Loading…", { exact: true })).toHaveCount(0);
  // Two rows picked for a bulk decision; at 800 px tall the filters and the
  // bulk bar fill the first screen, so scroll to the bulk bar and the rows.
  await page.getByRole("checkbox", { name: "Select the request of grace.hopper@navy.example" }).check();
  await page.getByRole("checkbox", { name: "Select the request of alan@bletchley.example" }).check();
  await expect(page.getByRole("heading", { level: 2, name: "Decide selected requests (2 selected)" })).toBeVisible();
  await page.evaluate(() => {
    (document.activeElement as HTMLElement | null)?.blur();
    const bulk = document.getElementById("bulk-title")!;
    window.scrollTo(0, bulk.getBoundingClientRect().top + window.scrollY - 40);
  });

  const path = process.env["UPDATE_SCREENSHOT"] ? join(repoRoot, "docs", "console.png") : test.info().outputPath("console.png");
  await page.screenshot({ path, fullPage: false, animations: "disabled", caret: "hide" });
});
