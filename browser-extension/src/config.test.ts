import { describe, expect, it } from "vitest";
import {
  DEFAULT_TTL_MINUTES,
  isLoopbackHost,
  missingSettings,
  normalizeServiceUrl,
  pastedTokenEntry,
  plainHttpWarning,
  readConfig,
  serviceOriginPattern,
} from "./config";

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

// Issue 17, item 14: warn before the API token crosses a network in clear text.
describe("plainHttpWarning", () => {
  const token = "t0ken";

  it("warns for plain http:// to another machine, naming the host and the fix", () => {
    for (const url of [
      "http://flags.qa.example.com",
      "http://10.0.0.5:8000",
      "http://192.168.1.20",
      "http://0.0.0.0:8000", // not loopback: every interface of some machine
      "http://128.0.0.1",
      "http://[::ffff:127.0.0.1]:8000", // mapped, not ::1: warn rather than guess
      "http://[fe80::1]",
      "http://localhost.example.com",
      "http://127.0.0.1.nip.io",
    ]) {
      const warning = plainHttpWarning(normalizeServiceUrl(url), token);
      expect(warning, url).not.toBeNull();
      expect(warning).toContain(new URL(url).host);
      expect(warning).toContain("https://");
    }
  });

  it("stays quiet for https, loopback, or when no token would be sent", () => {
    for (const url of [
      "https://flags.qa.example.com",
      "http://127.0.0.1:8000",
      "http://127.9.8.7",
      "http://127.1", // the URL parser makes it 127.0.0.1
      "http://2130706433", // so too
      "http://0x7f.0.0.1",
      "http://localhost:8000",
      "http://LOCALHOST",
      "http://new-lp.localhost:9000",
      "http://[::1]:8000",
      "http://[0:0:0:0:0:0:0:1]",
    ]) {
      expect(plainHttpWarning(normalizeServiceUrl(url), token), url).toBeNull();
    }
    expect(plainHttpWarning("http://flags.qa.example.com", "")).toBeNull();
    expect(plainHttpWarning("", token)).toBeNull();
  });

  it("knows loopback hosts as the URL parser writes them", () => {
    expect(isLoopbackHost("127.0.0.1")).toBe(true);
    expect(isLoopbackHost("127.255.255.255")).toBe(true);
    expect(isLoopbackHost("localhost.")).toBe(true);
    expect(isLoopbackHost("[::1]")).toBe(true);
    expect(isLoopbackHost("127.0.0.256")).toBe(false);
    expect(isLoopbackHost("1127.0.0.1")).toBe(false);
    expect(isLoopbackHost("127.0.0.1.example")).toBe(false);
    expect(isLoopbackHost("notlocalhost")).toBe(false);
  });
});

describe("pastedTokenEntry", () => {
  const token = "Zx81-abcdefghijklmnopqrstuv_0123456789";

  it("leaves a token alone", () => {
    expect(pastedTokenEntry(token)).toBeNull();
    expect(pastedTokenEntry("")).toBeNull();
    expect(pastedTokenEntry(` ${token} `)).toBeNull();
  });

  it("recognises a name:token entry and says to paste only the part after the colon", () => {
    const entry = pastedTokenEntry(`demo:${token}`);
    expect(entry).toMatchObject({ name: "demo", token, scopes: null });
    expect(entry?.message).toBe(
      'This looks like a FEATUREFLAG_API_TOKENS entry ("demo:…"), not a token: paste only the token, the part after "demo:".',
    );
    // The message never echoes the token (the field is a password field).
    expect(entry?.message).not.toContain(token);
    expect(pastedTokenEntry(`alice@example.com:${token},`)).toMatchObject({ name: "alice@example.com", token });
  });

  it("reads a scoped entry as the service does (name:token:read+forks)", () => {
    const entry = pastedTokenEntry(`ci:${token}:read+forks`);
    expect(entry).toMatchObject({ name: "ci", token, scopes: "read+forks" });
    expect(entry?.message).toContain('without the ":read+forks" at its end');
  });

  it("refuses the whole list without guessing which entry is yours", () => {
    const entry = pastedTokenEntry(`demo:${token},ci:${token}x:read`);
    expect(entry).toMatchObject({ name: null, token: null });
    expect(entry?.message).toContain("the whole FEATUREFLAG_API_TOKENS list");
  });

  it("is not fooled by a colon that cannot start an entry", () => {
    expect(pastedTokenEntry(`a b:${token}`)).toBeNull(); // no entry name has a space
    expect(pastedTokenEntry(`:${token}`)).toBeNull();
    expect(pastedTokenEntry("demo:")).toBeNull();
  });
});
