import { describe, expect, it } from "vitest";
import { resolve } from "./evaluate";

const overrides = new Map<string, boolean | string>([
  ["on", true],
  ["variant", "b"],
]);

describe("resolve", () => {
  it("returns the default when there is no override", () => {
    expect(resolve(overrides, "missing", false)).toEqual({
      flagKey: "missing",
      value: false,
      source: "default",
      reason: "DEFAULT",
    });
  });

  it("returns an override of the right type", () => {
    expect(resolve(overrides, "on", false)).toMatchObject({ value: true, source: "override", reason: "STATIC" });
    expect(resolve(overrides, "variant", "a")).toMatchObject({ value: "b", source: "override" });
  });

  it("ignores a string override for a boolean flag and says why and how to fix it", () => {
    const details = resolve(overrides, "variant", true);
    expect(details.value).toBe(true);
    expect(details.source).toBe("default");
    expect(details.reason).toBe("ERROR");
    expect(details.errorCode).toBe("TYPE_MISMATCH");
    expect(details.errorMessage).toBe(
      'Flag "variant" is read as a boolean (useBoolFlag/getBool) but the override is the string "b"; send true or false',
    );
  });

  it("ignores a boolean override for a string flag", () => {
    const details = resolve(overrides, "on", "a");
    expect(details.value).toBe("a");
    expect(details.errorMessage).toContain("send a string");
    expect(details.errorMessage).toContain('"on"');
  });
});
