// Emails (retry of a dead email), the auditor's read-only console and a
// forged call refused by the server, and erasure from the Privacy screen.
import { create, toBinary } from "@bufbuild/protobuf";
import { AccessRequestState, ApproveAccessRequestRequestSchema } from "../gen/sesame/v1/access_request_pb.js";
import { EmailState } from "../gen/sesame/v1/email_pb.js";
import { applicant, submit } from "../support/api.js";
import { waitFor } from "../support/harness.js";
import { expect, queueRow, signIn, test } from "../support/fixtures.js";

test("a dead email is retried from the Emails screen and reaches the SMTP server", async ({ page, env }) => {
  // The SMTP server refuses the next message for good: the "request
  // received" email goes DEAD at once (5xx is permanent).
  env.smtp.plan(["550"]);
  const alan = applicant("Alan", "Turing", "Bletchley Park");
  const request = await submit(env.submitter, alan, "bombe-room");
  const dead = await waitFor("the email to go DEAD", async () => {
    const res = await env.bob.emails.listEmails({ accessRequest: request.name });
    return res.emails.find((m) => m.state === EmailState.DEAD);
  });
  expect(dead.lastError).toContain("550");
  expect(env.smtp.receivedFor(alan.email)).toHaveLength(0);

  await signIn(page, env, env.keys.alice);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Emails" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Emails" })).toBeVisible();
  const row = page.getByRole("row").filter({ hasText: alan.email });
  await expect(row).toContainText("Dead");
  await expect(row).toContainText("Applicant: request received");

  env.smtp.plan([]);
  await row.getByRole("button", { name: `Retry the email to ${alan.email}` }).click();
  await expect(page.getByText(`The email to ${alan.email} is queued again.`)).toBeVisible();
  await expect(row).toHaveCount(0);

  const [mail] = await env.smtp.waitForMail(alan.email, 1);
  expect(mail!.raw).toMatch(/^Subject: .*bombe-room/m);
  await waitFor("the email to be SENT", async () => {
    const res = await env.bob.emails.listEmails({ accessRequest: request.name });
    return res.emails.find((m) => m.name === dead.name && m.state === EmailState.SENT);
  });
});

test("an auditor sees no decision buttons, and a forged approval from the auditor's page is PERMISSION_DENIED", async ({ page, env }) => {
  const mary = applicant("Mary", "Somerville");
  const request = await submit(env.submitter, mary, "observatory");
  await signIn(page, env, env.keys.carol);
  await expect(page.getByText("Read-only: auditors see everything and change nothing.")).toBeVisible();
  const row = queueRow(page, mary.email);
  await expect(row).toHaveCount(1);
  await expect(page.getByRole("checkbox")).toHaveCount(0);
  await expect(page.getByRole("button", { name: /Approve|Reject/ })).toHaveCount(0);
  const nav = page.getByRole("navigation", { name: "Main" });
  await expect(nav.getByRole("link")).toHaveText(["Queue", "Audit"]);

  await row.getByRole("link", { name: "Mary Somerville" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Access request: Mary Somerville" })).toBeVisible();
  await expect(page.getByRole("heading", { name: "Timeline" })).toBeVisible();
  await expect(page.getByRole("button", { name: /Approve|Reject|Cancel request/ })).toHaveCount(0);
  await expect(page.getByRole("textbox")).toHaveCount(0);

  // A hand-made gRPC-Web call from the page, with the key the page holds.
  const message = toBinary(ApproveAccessRequestRequestSchema, create(ApproveAccessRequestRequestSchema, { name: request.name, etag: request.etag, note: "forged" }));
  const answer = await page.evaluate(async (bytes: number[]) => {
    const key = sessionStorage.getItem("sesame.apiKey") ?? "";
    const frame = new Uint8Array(5 + bytes.length);
    new DataView(frame.buffer).setUint32(1, bytes.length);
    frame.set(bytes, 5);
    const res = await fetch("/sesame.v1.AccessRequestService/ApproveAccessRequest", {
      method: "POST",
      headers: { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", authorization: `Bearer ${key}` },
      body: frame,
    });
    let status = res.headers.get("grpc-status");
    let text = "";
    const body = new Uint8Array(await res.arrayBuffer());
    // Trailers come as the last frame (flag 0x80) unless the answer is trailers-only.
    for (let at = 0; at + 5 <= body.length; ) {
      const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
      if (body[at]! & 0x80) text += new TextDecoder().decode(body.subarray(at + 5, at + 5 + length));
      at += 5 + length;
    }
    status ??= /grpc-status:\s*(\d+)/i.exec(text)?.[1] ?? null;
    return { http: res.status, status, key: key.slice(0, 7) };
  }, Array.from(message));
  expect(answer).toEqual({ http: 200, status: "7", key: "sesame_" });

  const current = await env.bob.requests.getAccessRequest({ name: request.name });
  expect(current.accessRequest?.state).toBe(AccessRequestState.PENDING);
  expect(current.accessRequest?.policy?.approvedBy ?? []).toEqual([]);
});

test("erasing a subject from the Privacy screen, with typed confirmation, removes the applicant", async ({ page, env }) => {
  const emmy = applicant("Emmy", "Noether", "Göttingen");
  const request = await submit(env.submitter, emmy, "algebra-lab");
  await signIn(page, env, env.keys.alice);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Privacy" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Privacy" })).toBeVisible();

  await page.getByLabel("Applicant email").fill(emmy.email);
  await page.getByLabel("Reason (e.g. the ticket; no personal data)").fill("ticket GDPR-42");
  const erase = page.getByRole("button", { name: "Erase for good" });
  const confirm = page.getByLabel("Type the email address again to confirm");
  await confirm.fill("someone.else@example.com");
  await expect(page.getByText("The two addresses differ.")).toBeVisible();
  await expect(erase).toBeDisabled();
  await confirm.fill(emmy.email);
  await expect(erase).toBeEnabled();
  await erase.click();
  await expect(page.getByText(/^Erased: 1 requests anonymised, 1 pending cancelled, .* key deleted: Yes\.$/)).toBeVisible();

  // The server's answer: the request is kept, anonymous and cancelled.
  const current = await env.bob.requests.getAccessRequest({ name: request.name });
  expect(current.accessRequest?.applicant?.email ?? "").toBe("");
  expect(current.accessRequest?.applicant?.fullName ?? "").toBe("");
  expect(current.accessRequest?.state).toBe(AccessRequestState.CANCELLED);
  const byEmail = await env.bob.requests.listAccessRequests({ applicantEmail: emmy.email });
  expect(byEmail.accessRequests).toEqual([]);
});
