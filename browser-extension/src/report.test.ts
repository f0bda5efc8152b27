import { serializeList, Token } from "structured-headers";
import { describe, expect, it } from "vitest";
import { describeRefusal, parseRefusal, parseReport, TRUNCATED_MARKER, whereKey, whereLabel } from "./report";

describe("parseReport", () => {
  it("reads the example from the design", () => {
    const report = parseReport(
      '"SomeNewFeature.is_released";value=?1;source=override, "new-lp";value="b";source=default',
    );
    expect(report.omitted).toBe(0);
    expect(report.evaluations).toEqual([
      { name: "SomeNewFeature.is_released", value: true, source: "override", rejected: null, where: { kind: "server" } },
      { name: "new-lp", value: "b", source: "default", rejected: null, where: { kind: "server" } },
    ]);
  });

  it("keeps false values, rejection reasons and downstream services", () => {
    const header = serializeList([
      ["Checkout.is_new", new Map<string, string | boolean | Token>([["value", false], ["source", new Token("default")], ["rejected", "Flag 'Checkout.is_new' is declared -> bool but the override is the string 'on'"]])],
      ["pricing.banner", new Map<string, string | boolean | Token>([["value", "spring"], ["source", new Token("override")], ["service", "pricing"]])],
    ]);
    const [first, second] = parseReport(header).evaluations;
    expect(first?.value).toBe(false);
    expect(first?.rejected).toContain("declared -> bool");
    expect(first?.where).toEqual({ kind: "server" });
    expect(second?.where).toEqual({ kind: "downstream", service: "pricing" });
  });

  it("round-trips names and values with quotes, backslashes and commas", () => {
    const name = 'odd "name", with\\slash';
    const value = 'a, "b"; c';
    const header = serializeList([[name, new Map<string, string | Token>([["value", value], ["source", new Token("default")]])]]);
    expect(parseReport(header).evaluations[0]).toMatchObject({ name, value });
  });

  it("reads Display Strings, which the app uses for text that is not ASCII", () => {
    const [e] = parseReport('%"caf%c3%a9";value=%"cr%c3%a8me";source=default;service=%"pr%c3%afcing"').evaluations;
    expect(e).toMatchObject({ name: "café", value: "crème", where: { kind: "downstream", service: "prïcing" } });
  });

  it("reads a bare value parameter as true (RFC 9651 boolean shorthand)", () => {
    expect(parseReport('"a";value;source=override').evaluations[0]?.value).toBe(true);
  });

  it("counts the flags cut by the byte budget", () => {
    const report = parseReport(`"a";value=?1;source=default, "${TRUNCATED_MARKER}";omitted=12`);
    expect(report.evaluations.map((e) => e.name)).toEqual(["a"]);
    expect(report.omitted).toBe(12);
  });

  it("skips items that break the contract and keeps the rest", () => {
    const report = parseReport(
      '"ok";value=?0;source=default, token;value=?1;source=default, "no-value";source=default, ' +
        '"bad-source";value=?1;source=maybe, "string-source";value=?1;source="default", ' +
        '"number";value=3;source=default, ("inner");value=?1;source=default, "ok2";value="x";source=override',
    );
    expect(report.evaluations.map((e) => e.name)).toEqual(["ok", "ok2"]);
  });

  it.each(["", "garbage ,,,", '"unterminated', "\u00e9", '"a";value=?2'])("gives nothing for a garbled header %j", (value) => {
    expect(parseReport(value).evaluations).toEqual([]);
  });

  it("caps rejection reasons at 200 characters", () => {
    const reason = "x".repeat(500);
    const [e] = parseReport(`"a";value=?1;source=default;rejected="${reason}"`).evaluations;
    expect(e?.rejected).toHaveLength(200);
  });
});

describe("route items", () => {
  const followed = 'route;service="downstream";url="http://127.0.0.1:8003"';
  const refused =
    'route;service="recommendations";url="http://evil.example";rejected="the app does not allow evil.example:80 for service \'recommendations\'"';

  it("reads a followed route, apart from the flags", () => {
    const report = parseReport(`"a";value=?1;source=default, ${followed}`);
    expect(report.routes).toEqual([{ service: "downstream", url: "http://127.0.0.1:8003", rejected: null }]);
    expect(report.evaluations.map((e) => e.name)).toEqual(["a"]);
  });

  it("reads a refused route with its reason", () => {
    const [route] = parseReport(refused).routes;
    expect(route).toEqual({
      service: "recommendations",
      url: "http://evil.example",
      rejected: "the app does not allow evil.example:80 for service 'recommendations'",
    });
  });

  it("reads the example from docs/propagation.md, Display Strings and a route without a url", () => {
    const report = parseReport(
      '"Checkout.one_click";value=?0;source=default, route;service="recommendations";url="http://recs-pr-12.preview.svc.cluster.local", ' +
        'route;service=%"pr%c3%afcing";url="http://p.localhost:1", route;service="search";rejected="no"',
    );
    expect(report.routes.map((r) => [r.service, r.url, r.rejected])).toEqual([
      ["recommendations", "http://recs-pr-12.preview.svc.cluster.local", null],
      ["prïcing", "http://p.localhost:1", null],
      ["search", null, "no"],
    ]);
    expect(report.evaluations).toHaveLength(1);
  });

  it("ignores malformed route items and keeps the rest", () => {
    const report = parseReport(
      [
        "route;url=\"http://x\"", // no service
        'route;service="";url="http://x"', // empty service
        "route;service=downstream;url=\"http://x\"", // service is a token
        'route;service="a";url=3', // url is not text
        'route;service="a";url="http://x";rejected=?1', // rejected is not text
        '"route";service="a";url="http://x"', // a string: a flag item without value, skipped
        'routes;service="a";url="http://x"', // another token
        '(route);service="a";url="http://x"', // an inner list
        followed,
      ].join(", "),
    );
    expect(report.routes).toEqual([{ service: "downstream", url: "http://127.0.0.1:8003", rejected: null }]);
    expect(report.evaluations).toEqual([]);
  });

  it("caps a refusal reason at 200 characters", () => {
    const [route] = parseReport(`route;service="a";url="http://x";rejected="${"y".repeat(300)}"`).routes;
    expect(route?.rejected).toHaveLength(200);
  });
});

describe("parseRefusal", () => {
  it.each(["expired", "bad-signature", "wrong-environment", "malformed", "too-large", "too-many-flags", "invalid-override"])(
    "reads the token %s and describes it",
    (reason) => {
      expect(parseRefusal(reason)).toBe(reason);
      expect(describeRefusal(reason)).not.toBe(reason);
    },
  );

  it("passes an unknown reason through", () => {
    expect(parseRefusal("revoked")).toBe("revoked");
    expect(describeRefusal("revoked")).toBe("revoked");
  });

  it("gives null for a garbled header", () => {
    expect(parseRefusal("")).toBeNull();
    expect(parseRefusal("a b c")).toBeNull();
    expect(parseRefusal("?1")).toBeNull();
  });
});

describe("where", () => {
  it("labels and keys each place", () => {
    expect(whereLabel({ kind: "server" })).toBe("server");
    expect(whereLabel({ kind: "frontend" })).toBe("front end");
    expect(whereLabel({ kind: "downstream", service: "pricing" })).toBe("pricing");
    expect(whereKey({ kind: "downstream", service: "pricing" })).not.toBe(whereKey({ kind: "server" }));
  });
});
