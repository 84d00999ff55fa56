// axe-core on every screen in English and in French, the French switch, and
// the queue and detail at 360 px wide.
import type { Page } from "@playwright/test";
import { applicant, submit } from "../support/api.js";
import { connection, expect, expectNoSeriousA11yViolations, queueRow, signIn, test, type Env } from "../support/fixtures.js";

const texts = {
  en: { signIn: "Sign in", submit: "Sign in", language: "Language", queue: "Queue", render: "Show preview", verify: "Verify", loading: "Loading…" },
  fr: { signIn: "Connexion", submit: "Se connecter", language: "Langue", queue: "File", render: "Afficher l'aperçu", verify: "Vérifier", loading: "Chargement…" },
} as const;

/** Waits until the screen shows its heading and nothing is loading. */
async function settle(page: Page, loading: string): Promise<void> {
  await expect(page.locator("main h1")).toBeVisible();
  await expect(page.getByText(loading, { exact: true })).toHaveCount(0);
}

async function someRequests(env: Env) {
  const people = [
    [applicant("Ada", "Lovelace", "Analytical Engines"), "vpn-paris", "Maintenance of the difference engine"],
    [applicant("Grace", "Hopper", "US Navy"), "build-farm", "Compiler nightly builds"],
    [applicant("Alan", "Turing", "Bletchley Park"), "bombe-room", "Weekly rotor settings"],
  ] as const;
  const out = [];
  for (const [who, resource, why] of people) out.push({ who, request: await submit(env.submitter, who, resource, why) });
  return out;
}

for (const lang of ["en", "fr"] as const) {
  test(`axe-core finds no serious or critical violation on any screen (${lang})`, async ({ page, env }) => {
    const [first] = await someRequests(env);
    const t = texts[lang];
    await page.goto(env.sesame.url + "/");
    if (lang === "fr") await page.getByLabel("Language").selectOption("fr");
    await expect(page.getByRole("heading", { level: 1, name: t.signIn })).toBeVisible();
    await expect(page.locator("html")).toHaveAttribute("lang", lang);
    await expectNoSeriousA11yViolations(page, `sign-in (${lang})`);

    await page.locator("#api-key").fill(env.keys.alice);
    await page.getByRole("button", { name: t.submit }).click();
    await expect(page.getByRole("heading", { level: 1, name: t.queue })).toBeVisible();
    await expect(queueRow(page, first!.who.email)).toHaveCount(1);
    await settle(page, t.loading);
    await expectNoSeriousA11yViolations(page, `queue (${lang})`);

    await page.goto(`${env.sesame.url}/${first!.request.name}`);
    await expect(page.getByRole("heading", { level: 1, name: /Ada Lovelace/ })).toBeVisible();
    await settle(page, t.loading);
    await expectNoSeriousA11yViolations(page, `detail (${lang})`);

    await page.goto(`${env.sesame.url}/emails`);
    await settle(page, t.loading);
    await page.getByRole("button", { name: t.render }).click();
    await expect(page.locator("iframe")).toBeVisible();
    await expectNoSeriousA11yViolations(page, `emails with a preview (${lang})`);

    await page.goto(`${env.sesame.url}/stats`);
    await settle(page, t.loading);
    await expectNoSeriousA11yViolations(page, `stats (${lang})`);

    await page.goto(`${env.sesame.url}/audit`);
    await settle(page, t.loading);
    await page.getByRole("button", { name: t.verify, exact: true }).click();
    await expect(page.getByText(/(Intact|Intacte?)\b/)).toBeVisible();
    await expectNoSeriousA11yViolations(page, `audit (${lang})`);

    await page.goto(`${env.sesame.url}/privacy`);
    await settle(page, t.loading);
    await expectNoSeriousA11yViolations(page, `privacy (${lang})`);
  });
}

test("switching to French changes the visible texts, and it is remembered", async ({ page, env }) => {
  await signIn(page, env, env.keys.alice);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Queue");
  await page.getByLabel("Language").selectOption("fr");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("File");
  await expect(page.locator("html")).toHaveAttribute("lang", "fr");
  await expect(page.getByRole("navigation").getByRole("link")).toHaveText(["File", "E-mails", "Statistiques", "Audit", "Vie privée"]);
  await expect(page.getByRole("button", { name: "Se déconnecter" })).toBeVisible();
  await expect(connection(page)).not.toContainText("Live updates");
  await page.reload();
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("File");
  await page.getByLabel("Langue").selectOption("en");
  await expect(page.getByRole("heading", { level: 1 })).toHaveText("Queue");
});

test.describe("at 360 px wide", () => {
  test.use({ viewport: { width: 360, height: 740 } });

  async function expectNoHorizontalOverflow(page: Page, screen: string) {
    const { scrollWidth, clientWidth, wide } = await page.evaluate(() => {
      const clientWidth = document.documentElement.clientWidth;
      // The outermost elements that stick out, to name the culprit.
      const wide = [...document.body.querySelectorAll("*")]
        .filter((el) => el.getBoundingClientRect().right > clientWidth + 1 && !(el.parentElement && el.parentElement.getBoundingClientRect().right > clientWidth + 1))
        .slice(0, 5)
        .map((el) => `<${el.tagName.toLowerCase()} class="${el.className}"> right=${Math.round(el.getBoundingClientRect().right)}: ${(el.textContent ?? "").trim().slice(0, 60)}`);
      return { scrollWidth: document.documentElement.scrollWidth, clientWidth, wide };
    });
    expect(scrollWidth, `${screen}: document ${scrollWidth} px wide in a ${clientWidth} px viewport; sticking out:\n${wide.join("\n")}`).toBeLessThanOrEqual(clientWidth + 1);
  }

  test("the queue and the detail fit, and the decision buttons are visible", async ({ page, env }) => {
    const ada = applicant("Ada", "Lovelace", "Analytical Engines", "ada@example.com");
    const request = await submit(env.submitter, ada, "vpn-paris");
    await submit(env.submitter, applicant("Grace", "Hopper", "US Navy", "grace@navy.example"), "build-farm");
    await signIn(page, env, env.keys.alice);
    await expect(queueRow(page, ada.email)).toHaveCount(1);
    await settle(page, texts.en.loading);
    await expectNoHorizontalOverflow(page, "queue");
    await expect(page.getByRole("button", { name: "Approve selected" })).toBeVisible();

    await queueRow(page, ada.email).getByRole("link", { name: "Ada Lovelace" }).click();
    await expect(page.getByRole("heading", { level: 1, name: "Access request: Ada Lovelace" })).toBeVisible();
    await settle(page, texts.en.loading);
    await expectNoHorizontalOverflow(page, "detail");
    for (const name of ["Approve", "Reject", "Cancel request"]) {
      const button = page.getByRole("button", { name, exact: true });
      await button.scrollIntoViewIfNeeded();
      await expect(button).toBeInViewport();
      const box = await button.boundingBox();
      expect(box!.x).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width).toBeLessThanOrEqual(360);
    }
    expect(request.name).toMatch(/^accessRequests\//);
  });

  // UI bug found by these tests: in the stacked queue rows (< 760 px) the
  // value column is a plain `1fr` grid track, so an unbreakable applicant
  // address wider than ~190 px pushes the document wider than the screen.
  // Long values wrap inside the stacked rows (a regression test of a fixed bug).
  test("a long applicant address does not widen the queue", async ({ page, env }) => {
    const long = applicant("Katherine", "Johnson", "NASA", "katherine.johnson.langley@research.example.com");
    await submit(env.submitter, long, "orbit-calc");
    await signIn(page, env, env.keys.alice);
    await expect(queueRow(page, long.email)).toHaveCount(1);
    await settle(page, texts.en.loading);
    await expectNoHorizontalOverflow(page, "queue with a long address");
  });
});
