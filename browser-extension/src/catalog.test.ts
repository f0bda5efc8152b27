import { describe, expect, it } from "vitest";
import { fetchCatalog, readCatalog } from "./catalog";

const body = {
  flags: [
    { name: "new-lp", type: "str", choices: ["a", "b"], default: "a", kind: "trap", module: "m", path: "p", line: 1, description: "Landing page" },
    { name: "Checkout.is_one_click", type: "bool", choices: null, default: false, description: "" },
    { name: "", type: "bool" },
    { name: "odd", type: "int", choices: [1, 2], default: 3 },
    "junk",
  ],
};

describe("catalog", () => {
  it("reads the service's FlagInfo JSON", () => {
    expect(readCatalog(body)).toEqual([
      { name: "new-lp", type: "str", choices: ["a", "b"], default: "a", description: "Landing page" },
      { name: "Checkout.is_one_click", type: "bool", choices: null, default: false, description: null },
      { name: "odd", type: null, choices: null, default: null, description: null },
    ]);
    expect(readCatalog(null)).toEqual([]);
    expect(readCatalog({ flags: "x" })).toEqual([]);
  });

  it("fetches GET /api/flags with the API token, and says why when it cannot", async () => {
    const calls: [string, string | null][] = [];
    const ok = async (url: string, init?: RequestInit) => {
      calls.push([url, new Headers(init?.headers).get("Authorization")]);
      return new Response(JSON.stringify(body), { status: 200 });
    };
    const read = await fetchCatalog("http://s:1", "tok", ok);
    expect([read.entries.length, read.problem]).toEqual([3, null]);
    // Reads need a token with the read scope (issue 17): the popup sends the one it has.
    expect(calls).toEqual([["http://s:1/api/flags", "Bearer tok"]]);
    // Nothing configured: no catalog, and nothing to say (the popup says what to set).
    expect(await fetchCatalog("", "tok", ok)).toEqual({ entries: [], problem: null });
    expect(await fetchCatalog("http://s:1", "", ok)).toEqual({ entries: [], problem: null });
    expect(calls).toHaveLength(1);
    // Configured but failing: the popup must say why choices turned into text fields.
    const down = await fetchCatalog("http://s:1", "tok", async () => Promise.reject(new TypeError("down")));
    expect(down).toEqual({
      entries: [],
      problem:
        "Override service unreachable: choices unavailable (string flags show a text field instead of their choices).",
    });
    const problem = async (status: number) =>
      (await fetchCatalog("http://s:1", "tok", async () => new Response("no", { status }))).problem;
    expect(await problem(401)).toMatch(/^The override service refused the API token \(HTTP 401\): choices unavailable/);
    expect(await problem(403)).toMatch(/^The API token lacks the read scope the flag catalog needs: choices unavailable/);
    expect(await problem(500)).toMatch(/\(HTTP 500\): choices unavailable/);
    expect(await problem(200)).toMatch(/not JSON: choices unavailable/);
  });
});
