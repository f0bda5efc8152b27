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

  it("fetches GET /api/flags, and gives [] when it cannot", async () => {
    const urls: string[] = [];
    const ok = async (url: string) => {
      urls.push(url);
      return new Response(JSON.stringify(body), { status: 200 });
    };
    expect(await fetchCatalog("http://s:1", ok)).toHaveLength(3);
    expect(urls).toEqual(["http://s:1/api/flags"]);
    expect(await fetchCatalog("", ok)).toEqual([]);
    expect(await fetchCatalog("http://s:1", async () => new Response("no", { status: 500 }))).toEqual([]);
    expect(await fetchCatalog("http://s:1", async () => Promise.reject(new TypeError("down")))).toEqual([]);
  });
});
