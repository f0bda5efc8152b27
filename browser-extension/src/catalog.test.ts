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

  it("fetches GET /api/flags with the API token, and gives [] when it cannot", async () => {
    const calls: [string, string | null][] = [];
    const ok = async (url: string, init?: RequestInit) => {
      calls.push([url, new Headers(init?.headers).get("Authorization")]);
      return new Response(JSON.stringify(body), { status: 200 });
    };
    expect(await fetchCatalog("http://s:1", "tok", ok)).toHaveLength(3);
    // Reads need a token with the read scope (issue 17): the popup sends the one it has.
    expect(calls).toEqual([["http://s:1/api/flags", "Bearer tok"]]);
    expect(await fetchCatalog("", "tok", ok)).toEqual([]);
    expect(await fetchCatalog("http://s:1", "", ok)).toEqual([]);
    expect(calls).toHaveLength(1);
    expect(await fetchCatalog("http://s:1", "tok", async () => new Response("no", { status: 401 }))).toEqual([]);
    expect(await fetchCatalog("http://s:1", "tok", async () => Promise.reject(new TypeError("down")))).toEqual([]);
  });
});
