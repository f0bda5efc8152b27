import { describe, expect, it } from "vitest";
import { isSdkEvent, MAX_EVALUATIONS, parseFrontEndEvaluations, SDK_SOURCE } from "./frontend";

const win = { location: { origin: "http://app.localhost:8000" } };
const data = { source: SDK_SOURCE, type: "evaluations", evaluations: [] };

describe("isSdkEvent", () => {
  it("accepts the page's own message from its own origin", () => {
    expect(isSdkEvent({ source: win, origin: win.location.origin, data }, win)).toBe(true);
  });

  it("ignores other windows (an iframe or an opener posting to us)", () => {
    expect(isSdkEvent({ source: {}, origin: win.location.origin, data }, win)).toBe(false);
    expect(isSdkEvent({ source: null, origin: win.location.origin, data }, win)).toBe(false);
  });

  it("ignores another origin", () => {
    expect(isSdkEvent({ source: win, origin: "http://evil.localhost:8000", data }, win)).toBe(false);
  });

  it.each([null, "featureflag-sdk", { source: "other", type: "evaluations" }, { source: SDK_SOURCE, type: "other" }])(
    "ignores messages that are not the SDK's: %j",
    (other) => {
      expect(isSdkEvent({ source: win, origin: win.location.origin, data: other }, win)).toBe(false);
    },
  );
});

describe("parseFrontEndEvaluations", () => {
  it("reads the contract's shape and marks it as front end", () => {
    const out = parseFrontEndEvaluations({
      ...data,
      evaluations: [
        { name: "new-checkout", value: true, source: "override" },
        { name: "hero", value: "b", source: "default", rejected: "not a string" },
      ],
    });
    expect(out).toEqual([
      { name: "new-checkout", value: true, source: "override", rejected: null, where: { kind: "frontend" } },
      { name: "hero", value: "b", source: "default", rejected: "not a string", where: { kind: "frontend" } },
    ]);
  });

  it("drops entries that break the contract", () => {
    const out = parseFrontEndEvaluations({
      evaluations: [
        null,
        "x",
        { name: "", value: true, source: "default" },
        { name: "n", value: 1, source: "default" },
        { name: "n", value: { a: 1 }, source: "default" },
        { name: "n", value: true, source: "remote" },
        { name: "x".repeat(201), value: true, source: "default" },
        { name: "ok", value: false, source: "default", rejected: 5 },
      ],
    });
    expect(out.map((e) => e.name)).toEqual(["ok"]);
    expect(out[0]?.rejected).toBeNull();
  });

  it("gives nothing when evaluations is missing or not a list", () => {
    expect(parseFrontEndEvaluations(null)).toEqual([]);
    expect(parseFrontEndEvaluations({})).toEqual([]);
    expect(parseFrontEndEvaluations({ evaluations: { name: "a" } })).toEqual([]);
  });

  it("takes at most MAX_EVALUATIONS from one message", () => {
    const evaluations = Array.from({ length: MAX_EVALUATIONS + 10 }, (_, i) => ({ name: `f${i}`, value: true, source: "default" }));
    expect(parseFrontEndEvaluations({ evaluations })).toHaveLength(MAX_EVALUATIONS);
  });
});
