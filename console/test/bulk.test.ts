import { describe, expect, it } from "vitest";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema } from "@client/errors";
import { runBulk, summarizeBulk, type BulkItem } from "../src/bulk";
import { setLang } from "../src/i18n";

const items: BulkItem[] = ["a", "b", "c", "d", "e"].map((id) => ({ name: `accessRequests/${id}`, etag: `e-${id}`, label: `${id}@x.y` }));

function reasonError(code: Code, reason: string) {
  return new ConnectError(reason, code, undefined, [{ desc: ErrorInfoSchema, value: { reason, domain: "sesame.dev" } }]);
}

describe("bulk", () => {
  it("makes one call per request with its etag and keeps the order of results", async () => {
    setLang("en");
    const seen: string[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const results = await runBulk(
      items,
      async (item) => {
        seen.push(item.etag);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
        if (item.name.endsWith("b")) throw reasonError(Code.Aborted, "ETAG_MISMATCH");
        if (item.name.endsWith("d")) throw reasonError(Code.FailedPrecondition, "REQUEST_ALREADY_DECIDED");
        return item.name;
      },
      { concurrency: 2 },
    );
    expect(seen.sort()).toEqual(["e-a", "e-b", "e-c", "e-d", "e-e"]);
    expect(maxInFlight).toBe(2);
    expect(results.map((r) => r.ok)).toEqual([true, false, true, false, true]);
    expect(results[1].message).toBe("Someone changed this request meanwhile.");
    expect(results[3].reason).toBe("REQUEST_ALREADY_DECIDED");
    expect(summarizeBulk(results)).toEqual({
      total: 5,
      ok: 3,
      failed: 2,
      byReason: { ETAG_MISMATCH: 1, REQUEST_ALREADY_DECIDED: 1 },
    });
  });

  it("reports progress and handles no items", async () => {
    const progress: number[] = [];
    await runBulk(items.slice(0, 2), async () => 1, { onProgress: (d) => progress.push(d) });
    expect(progress).toEqual([1, 2]);
    expect(await runBulk([], async () => 1)).toEqual([]);
    expect(summarizeBulk([]).total).toBe(0);
  });

  it("counts failures without a reason as OTHER", async () => {
    const results = await runBulk(items.slice(0, 1), async () => {
      throw new Error("network down");
    });
    expect(summarizeBulk(results).byReason).toEqual({ OTHER: 1 });
  });
});
