import { describe, expect, it } from "vitest";
import type { Config } from "./config";
import { ServiceError, testConnection } from "./service";
import { fakeFetch, json } from "./testing";

const config: Config = { serviceUrl: "http://127.0.0.1:8000", apiToken: "dev-token-0123456789", ttlMinutes: 60 };
const S = "http://127.0.0.1:8000";

const healthy = () => json(200, { status: "ok" });
const minted = () => json(201, { token: "t", expires_at: "2030-01-01T00:00:00Z" });
const notFound = () => new Response("<h1>Not Found</h1>", { status: 404, headers: { "Content-Type": "text/html" } });

async function failure(promise: Promise<unknown>): Promise<ServiceError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ServiceError);
  return error as ServiceError;
}

describe("testConnection", () => {
  it("checks /healthz, then the API token, then the catalog", async () => {
    const { fn, calls } = fakeFetch({
      [`GET ${S}/healthz`]: healthy,
      [`POST ${S}/api/tokens`]: minted,
      [`GET ${S}/api/flags`]: () => json(200, { flags: [] }),
    });
    expect(await testConnection(config, fn)).toEqual({
      kind: "info",
      text: "Connected: the service is up and accepts your API token.",
    });
    expect(calls.map((c) => c.url)).toEqual([`${S}/healthz`, `${S}/api/tokens`, `${S}/api/flags`]);
    expect(JSON.parse(calls[1]?.init?.body as string)).toEqual({ flags: {}, ttl: 60 });
  });

  it("says nothing answers when the service is down", async () => {
    const error = await failure(testConnection(config, fakeFetch({}).fn));
    expect(error.problem).toBe("unreachable");
    expect(error.message).toBe(
      `Cannot reach the override service at ${S}: nothing answers there. Is it running, and is the service URL right?`,
    );
  });

  it("says a URL that answers without /healthz is not the override service", async () => {
    const error = await failure(testConnection(config, fakeFetch({ [`GET ${S}/healthz`]: notFound }).fn));
    expect(error.problem).toBe("not-service");
    expect(error.message).toContain(`${S} answers, but is not a featureflag override service (no /healthz: HTTP 404)`);
    // A /healthz that is not the service's JSON is not it either.
    const html = fakeFetch({ [`GET ${S}/healthz`]: () => new Response("OK", { status: 200 }) });
    expect((await failure(testConnection(config, html.fn))).problem).toBe("not-service");
  });

  it("tells the app's URL apart even when the app has a /healthz of its own (the demo shop does)", async () => {
    const app = { [`GET ${S}/healthz`]: healthy, [`POST ${S}/api/tokens`]: notFound };
    const error = await failure(testConnection(config, fakeFetch(app).fn));
    expect(error.problem).toBe("not-service");
    expect(error.message).toContain("is not a featureflag override service (no /api/tokens: HTTP 404)");
    expect(error.message).toContain("Is it your app's address?");
    // Without an API token too: the service answers 401 to an unauthenticated call, an app 404.
    const bare = await failure(testConnection({ ...config, apiToken: "" }, fakeFetch(app).fn));
    expect(bare.problem).toBe("not-service");
  });

  it("reports a wrong API token (401), distinct from a missing scope (403)", async () => {
    const wrong = fakeFetch({
      [`GET ${S}/healthz`]: healthy,
      [`POST ${S}/api/tokens`]: () => json(401, { error: "unauthorized", message: "The API token is not one of FEATUREFLAG_API_TOKENS; check it." }),
    });
    const unauthorized = await failure(testConnection(config, wrong.fn));
    expect(unauthorized.problem).toBe("unauthorized");
    expect(unauthorized.message).toMatch(/refused the API token \(HTTP 401\).*the part after the colon/);

    const scope =
      "The API token 'ci' lacks the 'tokens' scope; use a token that has it, or add it in FEATUREFLAG_API_TOKENS (ci:<token>:...+tokens, or no scopes for all).";
    const scoped = fakeFetch({
      [`GET ${S}/healthz`]: healthy,
      [`POST ${S}/api/tokens`]: () => json(403, { error: "insufficient-scope", message: scope }),
    });
    const forbidden = await failure(testConnection(config, scoped.fn));
    expect(forbidden.problem).toBe("forbidden");
    expect(forbidden.message).toBe(`The override service refused the API token (HTTP 403): ${scope}`);
  });

  it("warns when the token may apply overrides but not read the catalog", async () => {
    const { fn } = fakeFetch({
      [`GET ${S}/healthz`]: healthy,
      [`POST ${S}/api/tokens`]: minted,
      [`GET ${S}/api/flags`]: () => json(403, { error: "insufficient-scope", message: "lacks 'read'" }),
    });
    const report = await testConnection(config, fn);
    expect(report.kind).toBe("warn");
    expect(report.text).toContain("lacks the read scope");
  });

  it("says the service failed on a 5xx", async () => {
    const { fn } = fakeFetch({ [`GET ${S}/healthz`]: () => new Response("Bad Gateway", { status: 502 }) });
    const error = await failure(testConnection(config, fn));
    expect([error.problem, error.inSettings]).toEqual(["failed", false]);
    expect(error.message).toBe("The override service failed: HTTP 502");
  });

  it("says what is left to set when only the URL is known", async () => {
    const { fn, calls } = fakeFetch({
      [`GET ${S}/healthz`]: healthy,
      [`POST ${S}/api/tokens`]: () => json(401, { error: "unauthorized" }),
    });
    expect((await testConnection({ ...config, apiToken: "" }, fn)).text).toMatch(/set your API token/);
    expect(new Headers(calls[1]?.init?.headers).get("Authorization")).toBeNull();
  });

  it("never tells the user to go to Options: the message is shown there too", async () => {
    const cases = [
      fakeFetch({}),
      fakeFetch({ [`GET ${S}/healthz`]: notFound }),
      fakeFetch({ [`GET ${S}/healthz`]: healthy, [`POST ${S}/api/tokens`]: () => json(401, {}) }),
    ];
    for (const { fn } of cases) {
      expect((await failure(testConnection(config, fn))).message).not.toMatch(/Options/);
    }
  });
});
