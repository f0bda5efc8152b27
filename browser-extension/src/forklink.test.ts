import { describe, expect, it } from "vitest";
import type { Edits } from "./edits";
import { forkFormUrl, pageOverrides } from "./forklink";
import type { FlagRow } from "./state";

function row(name: string, value: boolean | string, source: "default" | "override", rejected: string | null = null): FlagRow {
  return { name, value, source, where: [{ kind: "server" }], rejected, differs: false, evaluations: [] };
}

describe("forkFormUrl", () => {
  it("gives each flag a flag.<name> parameter holding its value as a JSON literal", () => {
    const url = forkFormUrl("http://127.0.0.1:8000", {
      "new-lp": "b",
      "Checkout.is_one_click": true,
      "frontend.chat-widget": false,
    });
    expect(url).toBe(
      "http://127.0.0.1:8000/forks/new?flag.Checkout.is_one_click=true&flag.frontend.chat-widget=false&flag.new-lp=%22b%22",
    );
    // What a server reads back: the name after "flag.", and JSON that keeps the type.
    const params = [...new URL(url).searchParams].map(([k, v]) => [k, JSON.parse(v)]);
    expect(params).toEqual([
      ["flag.Checkout.is_one_click", true],
      ["flag.frontend.chat-widget", false],
      ["flag.new-lp", "b"],
    ]);
  });

  it("keeps a string that reads like a boolean a string, and encodes what a URL cannot carry", () => {
    const url = forkFormUrl("https://flags.qa.example.com/base", {
      "promo-banner": "Free shipping over $50 & more: 20% off?",
      "looks-bool": "true",
      "café.crème": 'say "hi" #1',
    });
    expect(url.startsWith("https://flags.qa.example.com/base/forks/new?")).toBe(true);
    expect(url).toContain("flag.looks-bool=%22true%22");
    const parsed = new URL(url);
    expect(parsed.search).not.toMatch(/[ "#+]/u); // a space is %20, not +; no raw quote or hash
    expect(parsed.hash).toBe("");
    expect(JSON.parse(parsed.searchParams.get("flag.promo-banner") ?? "")).toBe("Free shipping over $50 & more: 20% off?");
    expect(JSON.parse(parsed.searchParams.get("flag.looks-bool") ?? "")).toBe("true");
    expect(JSON.parse(parsed.searchParams.get("flag.café.crème") ?? "")).toBe('say "hi" #1');
  });

  it("opens an empty form when nothing is overridden", () => {
    expect(forkFormUrl("http://127.0.0.1:8000", {})).toBe("http://127.0.0.1:8000/forks/new");
  });
});

describe("pageOverrides", () => {
  it("takes the page's overrides, then the popup's applied ones and edits, without removed or rejected ones", () => {
    const rows = [
      row("new-lp", "b", "override"), // from a fork URL the page is on
      row("Checkout.is_one_click", false, "default"),
      row("promo-banner", "Free shipping over $50", "default", "a string flag, got true"),
      row("gone", true, "override"),
    ];
    const desired = { "promo-banner": true, "Checkout.is_one_click": true, "not-on-this-page": "x" };
    const edits: Edits = new Map<string, boolean | string | null>([["gone", null]]);
    expect(pageOverrides(rows, desired, edits)).toEqual({
      "new-lp": "b",
      "Checkout.is_one_click": true,
      "not-on-this-page": "x",
    });
    // A rejected override the user has changed since is what they want now.
    const fixed: Edits = new Map<string, boolean | string | null>([["promo-banner", "Spring sale"]]);
    expect(pageOverrides(rows, { ...desired, "promo-banner": "Spring sale" }, fixed)["promo-banner"]).toBe("Spring sale");
  });
});
