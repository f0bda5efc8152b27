import { describe, expect, it } from "vitest";
import type { Config } from "./config";
import {
  type Applied,
  badgeFor,
  COOKIE_NAME,
  cookieDetails,
  mintToken,
  overrideStatus,
  siteOf,
} from "./overrides";
import { ServiceError } from "./service";
import { fakeFetch, json } from "./testing";

const config: Config = { serviceUrl: "http://127.0.0.1:8000", apiToken: "dev-token-0123456789", ttlMinutes: 60 };


describe("mintToken", () => {
  it("posts the flags and ttl with the bearer token and reads the token and expiry", async () => {
    const { fn, calls } = fakeFetch({
      "POST http://127.0.0.1:8000/api/tokens": () => json(201, { token: "tok.en", expires_at: "2030-01-01T00:00:00Z" }),
    });
    const out = await mintToken(config, { "Home.is_new": true, hero: "b" }, fn);
    expect(out).toEqual({ token: "tok.en", expiresAt: Date.UTC(2030, 0, 1) });
    const init = calls[0]?.init;
    expect((init?.headers as Record<string, string>).Authorization).toBe("Bearer dev-token-0123456789");
    expect(JSON.parse(init?.body as string)).toEqual({ flags: { "Home.is_new": true, hero: "b" }, ttl: 3600 });
  });

  it("says to check the API token on 401, in words that fit the popup and Options alike", async () => {
    const { fn } = fakeFetch({ "POST http://127.0.0.1:8000/api/tokens": () => json(401, { detail: "bad token" }) });
    const error = (await mintToken(config, { a: true }, fn).catch((e: unknown) => e)) as ServiceError;
    expect(error.message).toMatch(/refused the API token \(HTTP 401\)/);
    expect(error.message).not.toMatch(/Options/);
    expect([error.problem, error.inSettings]).toEqual(["unauthorized", true]);
  });

  it("tells an app's URL from the service's when /api/tokens is not there", async () => {
    const { fn } = fakeFetch({ "POST http://127.0.0.1:8000/api/tokens": () => new Response("Not Found", { status: 404 }) });
    const error = (await mintToken(config, { a: true }, fn).catch((e: unknown) => e)) as ServiceError;
    expect(error.message).toContain("http://127.0.0.1:8000 answers, but is not a featureflag override service (no /api/tokens");
    expect(error.problem).toBe("not-service");
  });

  it("passes the service's own message on for other errors", async () => {
    const { fn } = fakeFetch({
      "POST http://127.0.0.1:8000/api/tokens": () =>
        json(422, { error: "invalid", message: "Invalid flag name 'a b'", errors: [] }),
    });
    const error = await mintToken(config, { "a b": true }, fn).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServiceError);
    expect((error as ServiceError).message).toContain("Invalid flag name 'a b'");
    expect((error as ServiceError).status).toBe(422);
  });

  it("says the service is unreachable when fetch fails", async () => {
    const { fn } = fakeFetch({});
    await expect(mintToken(config, { a: true }, fn)).rejects.toThrow(/Cannot reach the override service at http:\/\/127.0.0.1:8000: nothing answers/);
  });

  it("refuses an answer without a token", async () => {
    const { fn } = fakeFetch({ "POST http://127.0.0.1:8000/api/tokens": () => json(200, { ok: true }) });
    await expect(mintToken(config, { a: true }, fn)).rejects.toThrow(/is not a featureflag override service \(no token in the answer/);
  });
});

describe("cookie", () => {
  it("puts the token on the tab's site, host-only, until the token expires", () => {
    const details = cookieDetails("http://app.localhost:8000", "tok", Date.UTC(2030, 0, 1, 0, 0, 0, 900));
    expect(details).toMatchObject({
      url: "http://app.localhost:8000/",
      name: COOKIE_NAME,
      value: "tok",
      path: "/",
      httpOnly: true,
      secure: false,
      sameSite: "lax",
      expirationDate: Date.UTC(2030, 0, 1) / 1000,
    });
    expect(details).not.toHaveProperty("domain");
    expect(cookieDetails("https://qa.example.com", "tok", 0).secure).toBe(true);
    expect(COOKIE_NAME).toBe("featureflag_overrides");
  });

  it("knows which tabs can carry a cookie", () => {
    expect(siteOf("http://app.localhost:8000/a/b?c#d")).toBe("http://app.localhost:8000");
    expect(siteOf("https://qa.example.com/")).toBe("https://qa.example.com");
    expect(siteOf("chrome://extensions/")).toBeNull();
    expect(siteOf("not a url")).toBeNull();
    expect(siteOf(undefined)).toBeNull();
  });
});

describe("status and badge", () => {
  const applied: Applied = { origin: "http://a.localhost:1", flags: { a: true }, expiresAt: 2_000, appliedAt: 1_000 };

  it("counts the overrides the tab reported", () => {
    expect(overrideStatus(applied, null, 3, 1_500)).toEqual({ kind: "active", count: 3 });
    expect(badgeFor({ kind: "active", count: 3 }).text).toBe("3");
  });

  it("shows nothing when no override is active", () => {
    expect(overrideStatus(null, null, 0, 1_500)).toEqual({ kind: "none" });
    expect(badgeFor({ kind: "none" }).text).toBe("");
  });

  it("warns when the applied token expired", () => {
    expect(overrideStatus(applied, null, 0, 2_000)).toEqual({ kind: "expired", applied });
    expect(badgeFor({ kind: "expired", applied }).text).toBe("!");
  });

  it("warns when the app refused the token, before anything else", () => {
    expect(overrideStatus(applied, "bad-signature", 2, 2_500)).toEqual({ kind: "refused", reason: "bad-signature" });
    expect(badgeFor({ kind: "refused", reason: "x" }).text).toBe("!");
    expect(badgeFor({ kind: "refused", reason: "bad-signature" }).title).toContain("refused the override token (bad-signature)");
  });

  it("warns when the app rejected an override, with the flags in the tooltip", () => {
    expect(overrideStatus(applied, null, 1, 1_500, ["promo-banner"])).toEqual({ kind: "rejected", flags: ["promo-banner"] });
    const badge = badgeFor({ kind: "rejected", flags: ["promo-banner"] });
    expect(badge.text).toBe("!");
    expect(badge.title).toBe("Feature flags: the app rejected the override of promo-banner; open for the reason");
    const many = badgeFor({ kind: "rejected", flags: ["a", "b", "c", "d", "e"] }).title;
    expect(many).toContain("a, b, c and 2 more");
    // A refused token and expired overrides come first; without rejections, the count.
    expect(overrideStatus(applied, "expired", 0, 1_500, ["x"]).kind).toBe("refused");
    expect(overrideStatus(applied, null, 0, 2_500, ["x"]).kind).toBe("expired");
    expect(overrideStatus(applied, null, 2, 1_500, []).kind).toBe("active");
  });

  it("says in the tooltip what the number means", () => {
    expect(badgeFor({ kind: "active", count: 2 }).title).toBe("Feature flags: 2 overridden on this page");
    expect(badgeFor({ kind: "none" }).title).toBe("Feature flags");
  });
});
