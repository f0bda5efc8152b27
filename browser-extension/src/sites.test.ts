import { describe, expect, it } from "vitest";
import manifest from "../manifest.json";
import { BUILT_IN_SITES, extraSites, originPattern } from "./sites";

describe("sites", () => {
  it("matches the manifest's built-in host permissions and content script", () => {
    expect(manifest.host_permissions).toEqual(BUILT_IN_SITES);
    expect(manifest.content_scripts[0]?.matches).toEqual(BUILT_IN_SITES);
  });

  it("keeps the permission list to what docs/extension.md explains", () => {
    expect([...manifest.permissions].sort()).toEqual(["activeTab", "cookies", "scripting", "storage", "webRequest"]);
  });

  it("registers the content script only for sites granted at run time", () => {
    expect(extraSites([...BUILT_IN_SITES, "https://qa.example.com/*", "http://b.test/*"])).toEqual([
      "http://b.test/*",
      "https://qa.example.com/*",
    ]);
    expect(originPattern("https://qa.example.com")).toBe("https://qa.example.com/*");
  });
});
