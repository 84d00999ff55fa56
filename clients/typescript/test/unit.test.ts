// Checks that need no server: options validation and the backoff schedule.

import assert from "node:assert/strict";
import { test } from "node:test";
import { backoffDelay, createSesameClient, ErrorInfoSchema, BadRequestSchema } from "@sesame/client";

test("tls needs an https baseUrl; only http(s) URLs are accepted", () => {
  assert.throws(
    () => createSesameClient({ baseUrl: "http://127.0.0.1:1", apiKey: "sesame_x", tls: { ca: "pem" } }),
    /https/,
  );
  assert.throws(() => createSesameClient({ baseUrl: "ftp://127.0.0.1:1", apiKey: "sesame_x" }), /http/);
  assert.throws(() => createSesameClient({ baseUrl: "http://127.0.0.1:1", apiKey: "" }), /apiKey/);
  const secure = createSesameClient({ baseUrl: "https://127.0.0.1:1", apiKey: "sesame_x", tls: { ca: "pem" } });
  secure.close();
});

test("backoff grows exponentially, is capped and jittered", () => {
  const options = { initialBackoffMs: 100, maxBackoffMs: 1_000, multiplier: 2, jitter: 0.2 };
  for (let i = 0; i < 50; i++) {
    const first = backoffDelay(options, 1);
    assert.ok(first >= 80 && first <= 120, `attempt 1: ${first}`);
    const third = backoffDelay(options, 3);
    assert.ok(third >= 320 && third <= 480, `attempt 3: ${third}`);
    assert.ok(backoffDelay(options, 30) <= 1_000);
  }
  assert.equal(backoffDelay({ ...options, jitter: 0 }, 2), 200);
});

test("the error detail descriptors match google/rpc/error_details.proto", () => {
  assert.equal(ErrorInfoSchema.typeName, "google.rpc.ErrorInfo");
  assert.deepEqual(
    ErrorInfoSchema.fields.map((f) => [f.name, f.number, f.fieldKind]),
    [["reason", 1, "scalar"], ["domain", 2, "scalar"], ["metadata", 3, "map"]],
  );
  assert.equal(BadRequestSchema.typeName, "google.rpc.BadRequest");
  assert.equal(BadRequestSchema.fields[0]?.name, "field_violations");
  assert.equal(BadRequestSchema.fields[0]?.number, 1);
});
