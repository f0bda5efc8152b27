import { describe, expect, it } from "vitest";
import { DEFAULT_TTL_MINUTES, missingSettings, normalizeServiceUrl, readConfig, serviceOriginPattern } from "./config";

describe("config", () => {
  it("reads stored settings and fills gaps", () => {
    expect(readConfig(undefined)).toEqual({ serviceUrl: "", apiToken: "", ttlMinutes: DEFAULT_TTL_MINUTES });
    expect(readConfig({ serviceUrl: "http://x", apiToken: "t", ttlMinutes: 5 })).toEqual({
      serviceUrl: "http://x",
      apiToken: "t",
      ttlMinutes: 5,
    });
    expect(readConfig({ serviceUrl: 3, ttlMinutes: -1 }).ttlMinutes).toBe(DEFAULT_TTL_MINUTES);
  });

  it("normalises the service URL", () => {
    expect(normalizeServiceUrl(" http://127.0.0.1:8000/ ")).toBe("http://127.0.0.1:8000");
    expect(normalizeServiceUrl("https://flags.qa.example.com/base//")).toBe("https://flags.qa.example.com/base");
  });

  it.each([
    ["127.0.0.1:8000", /http:\/\/ or https:\/\//],
    ["flags", /http:\/\/ or https:\/\//],
    ["http://", /not a URL/],
    ["ftp://x", /http:\/\/ or https:\/\//],
    ["http://x/?a=1", /query/],
    ["http://u:p@x/", /credentials/],
  ])("refuses %s with a message that says the fix", (input, message) => {
    expect(() => normalizeServiceUrl(input)).toThrow(message);
  });

  it("says what to set when nothing is configured", () => {
    expect(missingSettings(readConfig(undefined))).toHaveLength(2);
    expect(missingSettings({ serviceUrl: "http://x", apiToken: "", ttlMinutes: 1 })[0]).toMatch(/API token/);
    expect(missingSettings({ serviceUrl: "http://x", apiToken: "t", ttlMinutes: 1 })).toEqual([]);
  });

  it("asks for access to the service's origin only", () => {
    expect(serviceOriginPattern("https://flags.example.com/base")).toBe("https://flags.example.com/*");
  });
});
