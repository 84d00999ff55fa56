// The live queue: a request submitted over gRPC appears without a reload; an
// approval in one browser leaves the queue of another, and its email reaches
// the SMTP server; the queue survives a server restart.
import { applicant, submit } from "../support/api.js";
import { connection, expect, queueRow, signIn, test } from "../support/fixtures.js";

test("a request submitted by a backend service appears in the queue live", async ({ page, env }) => {
  await signIn(page, env, env.keys.alice);
  const ada = applicant("Ada", "Lovelace");
  await expect(queueRow(page, ada.email)).toHaveCount(0);
  await submit(env.submitter, ada, "vpn-paris");
  const row = queueRow(page, ada.email);
  await expect(row).toHaveCount(1);
  await expect(row.getByRole("link", { name: "Ada Lovelace" })).toBeVisible();
  await expect(row).toContainText("vpn-paris");
  await expect(row).toContainText("Pending");
  // Announced for screen readers too.
  await expect(page.getByRole("status").filter({ hasText: `New request from ${ada.email}` })).toHaveCount(1);
});

test("approving in one browser removes the request from another admin's queue live, and the approval email is sent", async ({ browser, env }) => {
  const aliceContext = await browser.newContext();
  const bobContext = await browser.newContext();
  try {
    const alice = await aliceContext.newPage();
    const bob = await bobContext.newPage();
    await signIn(alice, env, env.keys.alice);
    await signIn(bob, env, env.keys.bob);

    const grace = applicant("Grace", "Hopper", "US Navy");
    await submit(env.submitter, grace, "build-farm");
    await expect(queueRow(alice, grace.email)).toHaveCount(1);
    await expect(queueRow(bob, grace.email)).toHaveCount(1);
    // The "request received" email first.
    await env.smtp.waitForMail(grace.email, 1);

    await queueRow(alice, grace.email).getByRole("link", { name: "Grace Hopper" }).click();
    await expect(alice.getByRole("heading", { level: 1, name: "Access request: Grace Hopper" })).toBeVisible();
    await alice.getByLabel("Approval note (optional)").fill("Granted for the compiler work");
    await alice.getByRole("button", { name: "Approve", exact: true }).click();
    await expect(alice.getByText("The request was approved.")).toBeVisible();

    // Bob never reloads: the row leaves his pending queue by itself.
    await expect(queueRow(bob, grace.email)).toHaveCount(0);
    await expect(bob.getByRole("status").filter({ hasText: "A request left the queue (Approved)" })).toHaveCount(1);

    const mails = await env.smtp.waitForMail(grace.email, 2);
    const approval = mails.find((m) => /^Subject: Your access to build-farm is approved/m.test(m.raw));
    expect(approval, mails.map((m) => m.raw.split("\n\n")[0]).join("\n---\n")).toBeDefined();
  } finally {
    await aliceContext.close();
    await bobContext.close();
  }
});

test("the live queue survives a server restart: no duplicate rows, back to live", async ({ page, env }) => {
  await signIn(page, env, env.keys.alice);
  const first = applicant("Katherine", "Johnson", "NASA");
  await submit(env.submitter, first, "orbit-calc");
  await expect(queueRow(page, first.email)).toHaveCount(1);

  await env.sesame.stop();
  await expect(connection(page)).not.toHaveText(/: live$/);
  await env.restart();
  await expect(connection(page)).toHaveText("Live updates: live", { timeout: 30_000 });

  const second = applicant("Dorothy", "Vaughan", "NASA");
  await submit(env.submitter, second, "orbit-calc");
  await expect(queueRow(page, second.email)).toHaveCount(1);
  await expect(queueRow(page, first.email)).toHaveCount(1);
  // Exactly the two pending requests, each once.
  await expect(page.getByRole("table").getByRole("row")).toHaveCount(3);
  await expect(page.getByText("2 requests shown")).toBeVisible();
});
