import { describe, expect, it } from "vitest";
import { detectLang, dictionaries, en, format, fr, hasKey } from "../src/i18n";

describe("i18n", () => {
  it("has the same keys in English and French", () => {
    expect(Object.keys(fr).sort()).toEqual(Object.keys(en).sort());
  });

  it("has no empty text and the same placeholders in both languages", () => {
    for (const key of Object.keys(en) as (keyof typeof en)[]) {
      expect(en[key].length, key).toBeGreaterThan(0);
      expect(fr[key].length, key).toBeGreaterThan(0);
      const names = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
      expect(names(fr[key]), key).toEqual(names(en[key]));
    }
  });

  it("detects the language from navigator.languages", () => {
    expect(detectLang(["fr-CA", "en"])).toBe("fr");
    expect(detectLang(["de-DE", "en-US"])).toBe("en");
    expect(detectLang(["de"])).toBe("en");
    expect(detectLang([])).toBe("en");
  });

  it("fills placeholders and leaves unknown ones", () => {
    expect(format("{a} of {b} {c}", { a: 1, b: 2n })).toBe("1 of 2 {c}");
  });

  it("knows every dictionary key", () => {
    expect(hasKey("reason.ETAG_MISMATCH")).toBe(true);
    expect(hasKey("reason.NOPE")).toBe(false);
    expect(Object.keys(dictionaries)).toEqual(["en", "fr"]);
  });
});
