import { describe, expect, it } from "vitest";
import { desiredOverrides, type Edits, isValidName, sameOverrides } from "./edits";
import type { Applied } from "./overrides";

const applied: Applied = { origin: "http://a", flags: { a: true, b: "x" }, expiresAt: 10_000, appliedAt: 0 };

describe("desiredOverrides", () => {
  it("starts from the applied overrides and layers edits on top", () => {
    const edits: Edits = new Map<string, boolean | string | null>([
      ["a", false],
      ["c", "new"],
    ]);
    expect(desiredOverrides(applied, edits, 5_000)).toEqual({ a: false, b: "x", c: "new" });
  });

  it("drops an override the user removed", () => {
    expect(desiredOverrides(applied, new Map<string, boolean | string | null>([["b", null]]), 5_000)).toEqual({ a: true });
  });

  it("ignores applied overrides whose token expired", () => {
    expect(desiredOverrides(applied, new Map<string, boolean | string | null>([["c", true]]), 10_000)).toEqual({ c: true });
  });

  it("does not change the applied record", () => {
    desiredOverrides(applied, new Map<string, boolean | string | null>([["a", false]]), 0);
    expect(applied.flags).toEqual({ a: true, b: "x" });
  });
});

describe("names and comparisons", () => {
  it("follows the SDK's name rule", () => {
    expect(isValidName("SomeNewFeature.is_released")).toBe(true);
    expect(isValidName("new-lp")).toBe(true);
    expect(isValidName("")).toBe(false);
    expect(isValidName("a b")).toBe(false);
    expect(isValidName("a\u00a0b")).toBe(false);
    expect(isValidName("a\u0085b")).toBe(false);
    expect(isValidName("x".repeat(201))).toBe(false);
    // Issue 17, item 2: a lone surrogate half is refused, a whole pair (an emoji) is not.
    expect(isValidName("a\ud800")).toBe(false);
    expect(isValidName("\udc00b")).toBe(false);
    expect(isValidName("rocket-\ud83d\ude80")).toBe(true);
    // The report's own item names are no flag names.
    expect(isValidName("featureflag.route")).toBe(false);
    expect(isValidName("featureflag.truncated")).toBe(false);
  });

  it("compares override sets by content", () => {
    expect(sameOverrides({ a: true, b: "x" }, { b: "x", a: true })).toBe(true);
    expect(sameOverrides({ a: true }, { a: false })).toBe(false);
    expect(sameOverrides({ a: true }, { a: true, b: "x" })).toBe(false);
    expect(sameOverrides({}, {})).toBe(true);
  });
});
