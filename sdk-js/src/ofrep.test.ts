import { describe, expect, it, vi } from "vitest";
import { type FetchOptions, fetchFlags, parseBulkResponse } from "./ofrep";

const json = (body: unknown, init: ResponseInit = {}) =>
  new Response(JSON.stringify(body), { status: 200, headers: { "Content-Type": "application/json" }, ...init });

function options(fetchImpl: typeof fetch, extra: Partial<FetchOptions> = {}): FetchOptions {
  return {
    endpoint: "http://app.test/ofrep/v1/evaluate/flags",
    fetch: fetchImpl,
    headers: {},
    credentials: "same-origin",
    context: {},
    timeoutMs: 10_000,
    etag: null,
    ...extra,
  };
}

describe("parseBulkResponse", () => {
  it("keeps boolean and string values and skips errors and other types", () => {
    const flags = parseBulkResponse({
      flags: [
        { key: "a", value: true, reason: "STATIC", variant: "true", metadata: { source: "override" } },
        { key: "b", value: "x" },
        { key: "c", value: 3 },
        { key: "d", errorCode: "FLAG_NOT_FOUND" },
        { key: "e", value: false, errorCode: "PARSE_ERROR" },
        "junk",
        null,
        { value: true },
      ],
    });
    expect(flags).toEqual(new Map<string, boolean | string>([["a", true], ["b", "x"]]));
  });

  it.each([null, [], "x", {}, { flags: {} }])("says what is wrong with %j", (body) => {
    expect(parseBulkResponse(body)).toMatch(/not an OFREP bulk answer/);
  });
});

describe("fetchFlags", () => {
  it("POSTs the OFREP request with the context, JSON headers and credentials", async () => {
    const fetchImpl = vi.fn<typeof fetch>(async () => json({ flags: [] }, { headers: { ETag: '"v1"' } }));
    const result = await fetchFlags(
      options(fetchImpl, { headers: { "Feature-Flag-Overrides": "tok" }, context: { targetingKey: "u1" } }),
    );
    expect(result).toEqual({ kind: "flags", flags: new Map(), etag: '"v1"' });
    const [url, init] = fetchImpl.mock.calls[0]!;
    expect(url).toBe("http://app.test/ofrep/v1/evaluate/flags");
    expect(init?.method).toBe("POST");
    expect(init?.credentials).toBe("same-origin");
    expect(JSON.parse(String(init?.body))).toEqual({ context: { targetingKey: "u1" } });
    expect(init?.headers).toMatchObject({
      "Content-Type": "application/json",
      Accept: "application/json",
      "Feature-Flag-Overrides": "tok",
    });
    expect(init?.headers).not.toHaveProperty("If-None-Match");
  });

  it("sends If-None-Match and reports 304 as not modified", async () => {
    const fetchImpl = vi.fn<typeof fetch>(async () => new Response(null, { status: 304 }));
    expect(await fetchFlags(options(fetchImpl, { etag: '"v1"' }))).toEqual({ kind: "not-modified" });
    expect(fetchImpl.mock.calls[0]![1]?.headers).toMatchObject({ "If-None-Match": '"v1"' });
  });

  it("treats a 304 it did not ask for as a bad answer", async () => {
    const result = await fetchFlags(options(async () => new Response(null, { status: 304 })));
    expect(result).toEqual({ kind: "failed", problem: "it answered HTTP 304" });
  });

  it.each([
    [new Response("boom", { status: 500 }), "it answered HTTP 500"],
    [new Response("<html>", { status: 200 }), "its answer is not JSON"],
    [json({ flag: [] }), 'the body is not an OFREP bulk answer ({"flags": [...]})'],
  ])("never throws on a bad answer (%#)", async (response, problem) => {
    expect(await fetchFlags(options(async () => response))).toEqual({ kind: "failed", problem });
  });

  it("never throws on a network failure", async () => {
    const result = await fetchFlags(
      options(async () => {
        throw new TypeError("Failed to fetch");
      }),
    );
    expect(result).toEqual({ kind: "failed", problem: "the request failed (Failed to fetch)" });
  });

  it("gives up after timeoutMs by aborting the request", async () => {
    vi.useFakeTimers();
    try {
      const hanging: typeof fetch = (_url, init) =>
        new Promise((_resolve, reject) => {
          init?.signal?.addEventListener("abort", () => reject(new DOMException("aborted", "AbortError")));
        });
      const pending = fetchFlags(options(hanging, { timeoutMs: 2500 }));
      await vi.advanceTimersByTimeAsync(2500);
      expect(await pending).toEqual({ kind: "failed", problem: "it did not answer within 2500 ms" });
    } finally {
      vi.useRealTimers();
    }
  });
});
