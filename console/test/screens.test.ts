// Small decisions the screens make, kept out of the components to test them.
import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { CallerRole } from "@client/gen/sesame/v1/caller_pb";
import { EmailSchema, EmailState } from "@client/gen/sesame/v1/email_pb";
import { consoleRole, isAdmin } from "../src/session";
import { isFailing } from "../src/ui/Emails";
import { exportFileName, sameSubject } from "../src/ui/Privacy";

describe("roles", () => {
  it("lets admins and auditors in, not submitters or gateways", () => {
    expect(consoleRole(CallerRole.ADMIN)).toBe(true);
    expect(consoleRole(CallerRole.AUDITOR)).toBe(true);
    expect(consoleRole(CallerRole.SUBMITTER)).toBe(false);
    expect(consoleRole(CallerRole.GATEWAY)).toBe(false);
    expect(consoleRole(CallerRole.UNSPECIFIED)).toBe(false);
  });

  it("shows decision buttons to admins only", () => {
    expect(isAdmin({ name: "a", role: CallerRole.ADMIN, slaMs: 0 })).toBe(true);
    expect(isAdmin({ name: "a", role: CallerRole.AUDITOR, slaMs: 0 })).toBe(false);
  });
});

describe("emails", () => {
  it("calls failing a pending email whose last attempt failed", () => {
    expect(isFailing(create(EmailSchema, { state: EmailState.PENDING, attempts: 2, lastError: "421" }))).toBe(true);
    expect(isFailing(create(EmailSchema, { state: EmailState.PENDING, attempts: 0 }))).toBe(false);
    expect(isFailing(create(EmailSchema, { state: EmailState.DEAD, attempts: 8, lastError: "550" }))).toBe(false);
  });
});

describe("privacy", () => {
  it("confirms erasure only with the same address (trimmed, any case)", () => {
    expect(sameSubject("Ada@Example.com", " ada@example.com ")).toBe(true);
    expect(sameSubject("ada@example.com", "ada@example.org")).toBe(false);
    expect(sameSubject("", "")).toBe(false);
  });

  it("names the export without the address", () => {
    expect(exportFileName(new Date("2026-01-02T03:04:05Z"))).toBe("sesame-subject-export-2026-01-02-03-04-05.json");
  });
});
