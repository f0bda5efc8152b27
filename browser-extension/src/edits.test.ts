import { describe, expect, it } from "vitest";
import { addRefusal, desiredOverrides, type Edits, isValidName, knownType, sameOverrides } from "./edits";
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

describe("adding a flag by name", () => {
  const reported = new Map<string, boolean | string>([
    ["promo-banner", "Free shipping over $50"],
    ["Checkout.is_one_click", false],
  ]);

  it("knows a flag's type from the page's report first, then from the catalog", () => {
    expect(knownType("promo-banner", reported, null)).toEqual({ type: "str", from: "page" });
    expect(knownType("promo-banner", reported, "bool")).toEqual({ type: "str", from: "page" });
    expect(knownType("Checkout.is_one_click", reported, undefined)).toEqual({ type: "bool", from: "page" });
    expect(knownType("new-lp", reported, "str")).toEqual({ type: "str", from: "catalog" });
    expect(knownType("frontend.chat-widget", reported, undefined)).toBeNull();
  });

  it("refuses a value of the other type, saying which to choose", () => {
    expect(addRefusal("promo-banner", true, { type: "str", from: "page" })).toBe(
      'promo-banner is a text flag (the page reported a text value): choose "text…" and type the value',
    );
    expect(addRefusal("Checkout.is_one_click", "true", { type: "bool", from: "catalog" })).toBe(
      "Checkout.is_one_click is an on/off flag (the catalog declares true or false): choose on or off",
    );
  });

  it("lets a value of the known type, or of an unknown flag, through", () => {
    expect(addRefusal("promo-banner", "Spring sale", { type: "str", from: "page" })).toBeNull();
    expect(addRefusal("Checkout.is_one_click", false, { type: "bool", from: "page" })).toBeNull();
    expect(addRefusal("frontend.chat-widget", true, null)).toBeNull();
  });
});
