// Sign-in with an API key, a wrong key, sign-out.
import { expect, signIn, test } from "../support/fixtures.js";

test("the admin key signs in; a wrong key is refused in plain words; sign-out forgets the key", async ({ page, env }) => {
  await page.goto(env.sesame.url + "/");
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();

  // A well-formed key the server does not know.
  await page.getByLabel("API key").fill("sesame_AAAAAAAAAAAAAAAAAAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("This API key is unknown or has been revoked. Sign in with a valid key.");
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);

  await signIn(page, env, env.keys.alice);
  await expect(page.getByText("Signed in as alice (admin)")).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.getItem("sesame.apiKey"))).toBe(env.keys.alice);

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();
  await expect(page.getByRole("alert")).toHaveText("You are signed out.");
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  // A reload stays signed out: nothing else remembered the key.
  await page.reload();
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();
  await expect(page.getByRole("navigation", { name: "Main" })).toHaveCount(0);
});

test("a submitter key is not a console key", async ({ page, env }) => {
  await page.goto(env.sesame.url + "/");
  await page.getByLabel("API key").fill(env.keys.submitter);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("This console is for admins and auditors. A submitter key cannot use it.");
  await expect(page.getByRole("heading", { level: 1, name: "Sign in" })).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
});
