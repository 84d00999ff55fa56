import { describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "@client/errors";
import { describeError } from "../src/errors";
import { setLang } from "../src/i18n";

function err(code: Code, message: string, reason?: string, violations: { field: string; description: string; reason?: string }[] = [], metadata: Record<string, string> = {}) {
  const details = [];
  if (reason) details.push({ desc: ErrorInfoSchema, value: { reason, domain: "sesame.dev", metadata } });
  if (violations.length) details.push({ desc: BadRequestSchema, value: { fieldViolations: violations } });
  return new ConnectError(message, code, undefined, details);
}

describe("describeError", () => {
  it("maps a known reason to plain words", () => {
    setLang("en");
    const ui = describeError(err(Code.FailedPrecondition, "request is approved", "REQUEST_ALREADY_DECIDED"));
    expect(ui.message).toBe("This request was already decided.");
    expect(ui.reason).toBe("REQUEST_ALREADY_DECIDED");
  });

  it("uses the current language", () => {
    setLang("fr");
    expect(describeError(err(Code.FailedPrecondition, "x", "REQUEST_ALREADY_DECIDED")).message).toBe(
      "Cette demande a déjà été décidée.",
    );
    setLang("en");
  });

  it("falls back to the server's message for an unknown reason", () => {
    const ui = describeError(err(Code.FailedPrecondition, "the moon is full", "MOON_FULL"));
    expect(ui.message).toBe("Something went wrong: the moon is full");
  });

  it("keys field violations by field", () => {
    const ui = describeError(
      err(Code.InvalidArgument, "invalid", "INVALID_ARGUMENT", [
        { field: "reason", description: "must not be empty" },
        { field: "note", description: "too long" },
      ]),
    );
    expect(ui.fields).toEqual({ reason: "must not be empty", note: "too long" });
    expect(ui.message).toBe("Some fields are invalid.");
  });

  it("translates the server's commonest field description", () => {
    setLang("fr");
    const ui = describeError(
      err(Code.InvalidArgument, "invalid", "INVALID_ARGUMENT", [{ field: "reason", description: "is required" }]),
    );
    expect(ui.fields).toEqual({ reason: "est obligatoire" });
    setLang("en");
  });

  it("flags a stale etag", () => {
    const ui = describeError(err(Code.Aborted, "etag mismatch", "ETAG_MISMATCH"));
    expect(ui.stale).toBe(true);
    expect(ui.message).toBe("Someone changed this request meanwhile.");
  });

  it("flags UNAVAILABLE for a retry banner and UNAUTHENTICATED for sign-in", () => {
    expect(describeError(err(Code.Unavailable, "")).unavailable).toBe(true);
    expect(describeError(err(Code.Unavailable, "")).message).toBe("The server cannot be reached right now.");
    const un = describeError(err(Code.Unauthenticated, "bad key", "API_KEY_INVALID"));
    expect(un.unauthenticated).toBe(true);
    expect(un.message).toBe("This API key is unknown or revoked.");
  });

  it("keeps ErrorInfo metadata such as the resume cursor", () => {
    expect(describeError(err(Code.ResourceExhausted, "slow", "WATCHER_TOO_SLOW", [], { cursor: "c9" })).metadata).toEqual({
      cursor: "c9",
    });
  });

  it("treats a failed fetch (server unreachable) as UNAVAILABLE", () => {
    const ui = describeError(new ConnectError("Failed to fetch", Code.Unknown, undefined, undefined, new TypeError("Failed to fetch")));
    expect(ui.unavailable).toBe(true);
    expect(ui.code).toBe(Code.Unavailable);
    expect(ui.message).toBe("The server cannot be reached right now.");
    expect(describeError(ConnectError.from(new TypeError("Failed to fetch"))).unavailable).toBe(true);
  });

  it("describes a plain Error", () => {
    const ui = describeError(new Error("boom"));
    expect(ui.code).toBe(Code.Unknown);
    expect(ui.message).toContain("boom");
  });
});
