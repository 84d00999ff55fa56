// Email through a provider (a local server speaking Resend's API): a hard
// bounce reported by a signed webhook suppresses the address; the Emails
// screen shows the suppressed email and the suppression, and an admin lifts
// it.
import { createHmac, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { EmailState } from "../gen/sesame/v1/email_pb.js";
import { applicant, submit } from "../support/api.js";
import { waitFor } from "../support/harness.js";
import { expect, expectNoSeriousA11yViolations, signIn, test } from "../support/fixtures.js";

const SECRET = `whsec_${Buffer.from("console e2e webhook signing key!").toString("base64")}`;

/** POST /emails as Resend answers it: an id per accepted email. */
async function fakeResend(): Promise<{ server: Server; url: string; accepted: Array<{ id: string; body: any }> }> {
  const accepted: Array<{ id: string; body: any }> = [];
  const server = createServer((req, res) => {
    let text = "";
    req.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
    req.on("end", () => {
      if (req.method !== "POST" || req.url !== "/emails" || req.headers.authorization !== "Bearer re_console_test") {
        res.writeHead(401, { "content-type": "application/json" }).end('{"name":"validation_error","message":"API key is invalid"}');
        return;
      }
      const id = randomUUID();
      accepted.push({ id, body: JSON.parse(text) });
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, accepted };
}

/** Posts `event` to Sesame's Resend webhook, signed as Svix signs it. */
async function postWebhook(sesameUrl: string, event: unknown): Promise<number> {
  const id = `msg_${randomUUID()}`;
  const timestamp = String(Math.floor(Date.now() / 1000));
  const body = JSON.stringify(event);
  const key = Buffer.from(SECRET.slice("whsec_".length), "base64");
  const signature = createHmac("sha256", key).update(`${id}.${timestamp}.${body}`).digest("base64");
  const res = await fetch(`${sesameUrl}/webhooks/resend`, {
    method: "POST",
    headers: { "content-type": "application/json", "svix-id": id, "svix-timestamp": timestamp, "svix-signature": `v1,${signature}` },
    body,
  });
  return res.status;
}

test("a hard bounce suppresses the address, the Emails screen shows it, and an admin lifts it", async ({ page, env }) => {
  const resend = await fakeResend();
  try {
    env.sesame.overrides = {
      SESAME_MAIL_TRANSPORT: "resend://",
      SESAME_MAIL_RESEND_BASE_URL: resend.url,
      SESAME_MAIL_RESEND_API_KEY: "re_console_test",
      SESAME_MAIL_RESEND_WEBHOOK_SECRET: SECRET,
    };
    await env.restart();
    const grace = applicant("Grace", "Hopper", "Harvard");
    const request = await submit(env.submitter, grace, "mark-ii");
    const received = await waitFor("Resend to accept the email", () => resend.accepted[0]);
    const tags: Array<{ name: string; value: string }> = received.body.tags;
    const outboxId = tags.find((tag) => tag.name === "sesame_email")!.value;
    await waitFor("the email to be SENT", async () => {
      const res = await env.bob.emails.listEmails({ accessRequest: request.name });
      return res.emails.find((m) => m.state === EmailState.SENT);
    });
    const status = await postWebhook(env.sesame.url, {
      type: "email.bounced",
      created_at: new Date().toISOString(),
      data: {
        email_id: received.id,
        to: [grace.email],
        tags: { sesame_email: outboxId },
        bounce: { type: "Permanent", subType: "General", message: "Mailbox does not exist" },
      },
    });
    expect(status).toBe(200);
    // The approval email is not sent to the suppressed address.
    await env.bob.requests.approveAccessRequest({ name: request.name, etag: request.etag });
    await waitFor("the approval email to be SUPPRESSED", async () => {
      const res = await env.bob.emails.listEmails({ accessRequest: request.name });
      return res.emails.find((m) => m.state === EmailState.SUPPRESSED);
    });
    expect(resend.accepted).toHaveLength(1);

    await signIn(page, env, env.keys.alice);
    await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Emails" }).click();
    await expect(page.getByRole("heading", { level: 1, name: "Emails" })).toBeVisible();
    const email = page.getByRole("table").first().getByRole("row").filter({ hasText: grace.email });
    await expect(email).toContainText("Suppressed");
    await expect(email).toContainText("the address is suppressed after a hard bounce reported by resend");
    const suppressions = page.getByRole("table", { name: "Suppressed addresses" });
    const row = suppressions.getByRole("row").filter({ hasText: grace.email });
    await expect(row).toContainText("Hard bounce (resend)");
    await expect(row).toContainText("Mailbox does not exist");
    await expectNoSeriousA11yViolations(page, "emails with a suppression");

    // Among all emails, the first one shows its provider and the bounce.
    await page.getByLabel("Show").selectOption("all");
    const bounced = page.getByRole("table").first().getByRole("row").filter({ hasText: "Applicant: request received" });
    await expect(bounced).toContainText("Sent, bounced");
    await expect(bounced).toContainText("via resend");

    await row.getByRole("button", { name: `Lift the suppression of ${grace.email}` }).click();
    await expect(page.getByText(`Emails to ${grace.email} will be sent again.`)).toBeVisible();
    await expect(row).toHaveCount(0);
    const left = await env.bob.emails.listSuppressions({});
    expect(left.suppressions).toHaveLength(0);
  } finally {
    resend.server.close();
  }
});
