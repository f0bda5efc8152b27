import { afterEach, describe, expect, it, vi } from "vitest";
import { createClient, type FeatureFlagClient } from "./client";

const ENDPOINT = "http://app.test/ofrep/v1/evaluate/flags";
const flags = (items: Record<string, boolean | string>, etag?: string) =>
  new Response(
    JSON.stringify({
      flags: Object.entries(items).map(([key, value]) => ({ key, value, reason: "STATIC", variant: String(value) })),
    }),
    { status: 200, headers: etag ? { ETag: etag } : {} },
  );
const tick = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

describe("createClient", () => {
  const clients: FeatureFlagClient[] = [];
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  const make = (...args: Parameters<typeof createClient>) => {
    const client = createClient(...args);
    clients.push(client);
    return client;
  };

  it("asks the page's own origin by default", async () => {
    const fetchImpl = vi.fn<typeof fetch>(async () => flags({}));
    await make({ fetch: fetchImpl }).refresh();
    expect(fetchImpl.mock.calls[0]![0]).toBe(`${window.location.origin}/ofrep/v1/evaluate/flags`);
  });

  it("answers defaults while loading and overrides once loaded", async () => {
    const client = make({ endpoint: ENDPOINT, fetch: async () => flags({ on: true, variant: "b" }) });
    expect(client.status).toBe("loading");
    expect(client.getBool("on")).toBe(false);
    expect(client.getString("variant", "a")).toBe("a");
    await client.refresh();
    expect(client.status).toBe("ready");
    expect(client.getBool("on")).toBe(true);
    expect(client.getBool("missing", true)).toBe(true);
    expect(client.getString("variant", "a")).toBe("b");
  });

  it("uses initial (SSR) values until the first answer", async () => {
    const client = make({ endpoint: ENDPOINT, fetch: async () => flags({ on: false }), initial: { on: true } });
    expect(client.getBool("on")).toBe(true);
    expect(client.getBoolDetails("on").source).toBe("override");
    await client.refresh();
    expect(client.getBool("on")).toBe(false);
  });

  it("honours ETag: sends If-None-Match and keeps the cached values on 304", async () => {
    const fetchImpl = vi
      .fn<typeof fetch>()
      .mockResolvedValueOnce(flags({ on: true }, '"abc"'))
      .mockResolvedValueOnce(new Response(null, { status: 304 }));
    const client = make({ endpoint: ENDPOINT, fetch: fetchImpl });
    const listener = vi.fn();
    client.subscribe(listener);
    await client.refresh();
    await client.refresh();
    expect(fetchImpl.mock.calls[1]![1]?.headers).toMatchObject({ "If-None-Match": '"abc"' });
    expect(client.getBool("on")).toBe(true);
    expect(listener).toHaveBeenCalledTimes(1);
  });

  it("notifies subscribers on change only, and unsubscribes", async () => {
    const fetchImpl = vi.fn<typeof fetch>(async () => flags({ on: true }));
    const client = make({ endpoint: ENDPOINT, fetch: fetchImpl });
    const listener = vi.fn();
    const unsubscribe = client.subscribe(listener);
    await client.refresh();
    const version = client.version;
    await client.refresh(); // same answer
    expect(listener).toHaveBeenCalledTimes(1);
    expect(client.version).toBe(version);
    unsubscribe();
    fetchImpl.mockResolvedValueOnce(flags({ on: false }));
    await client.refresh();
    expect(listener).toHaveBeenCalledTimes(1);
    expect(client.version).toBe(version + 1);
  });

  it("shares one request between concurrent refreshes", async () => {
    const fetchImpl = vi.fn<typeof fetch>(async () => flags({}));
    const client = make({ endpoint: ENDPOINT, fetch: fetchImpl });
    await Promise.all([client.refresh(), client.refresh()]);
    expect(fetchImpl).toHaveBeenCalledTimes(1);
  });

  it("falls back to defaults with exactly one warning, and never rejects", async () => {
    const warn = vi.fn();
    const fetchImpl = vi.fn<typeof fetch>(() => {
      throw new TypeError("Failed to fetch"); // even a synchronous throw
    });
    const client = make({ endpoint: ENDPOINT, fetch: fetchImpl, warn });
    await client.refresh();
    fetchImpl.mockResolvedValue(new Response("nope", { status: 502 }));
    await client.refresh();
    expect(client.status).toBe("error");
    expect(client.getBool("on", true)).toBe(true);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toBe(
      `featureflag: could not load flags from ${ENDPOINT}: the request failed (Failed to fetch); using defaults`,
    );
  });

  it("keeps the values it had when a later refresh fails", async () => {
    const fetchImpl = vi.fn<typeof fetch>().mockResolvedValueOnce(flags({ on: true }));
    fetchImpl.mockResolvedValueOnce(new Response("{}", { status: 200 }));
    const client = make({ endpoint: ENDPOINT, fetch: fetchImpl, warn: () => {} });
    await client.refresh();
    await client.refresh();
    expect(client.status).toBe("error");
    expect(client.getBool("on")).toBe(true);
  });

  it("warns (once) instead of throwing when it has no endpoint", async () => {
    const warn = vi.fn();
    const client = make({ fetch: undefined, warn, endpoint: undefined });
    vi.stubGlobal("location", { origin: "null" });
    try {
      await client.refresh();
    } finally {
      vi.unstubAllGlobals();
    }
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toMatch(/no endpoint or no fetch/);
  });

  it("sends extra headers (e.g. the token header outside a browser)", async () => {
    const fetchImpl = vi.fn<typeof fetch>(async () => flags({}));
    await make({ endpoint: ENDPOINT, fetch: fetchImpl, headers: { "Feature-Flag-Overrides": "t" } }).refresh();
    expect(fetchImpl.mock.calls[0]![1]?.headers).toMatchObject({ "Feature-Flag-Overrides": "t" });
  });

  it("reports each evaluation to the extension, a rejected override with its reason", async () => {
    const post = vi.spyOn(window, "postMessage");
    const client = make({ endpoint: ENDPOINT, fetch: async () => flags({ variant: "b", on: true }) });
    await client.refresh();
    expect(client.getBool("variant")).toBe(false);
    expect(client.getBool("on")).toBe(true);
    client.getString("lp", "a");
    client.getBoolDetails("quiet", false, { report: false });
    await tick();
    expect(post).toHaveBeenCalledTimes(1);
    expect(post.mock.calls[0]![0]).toEqual({
      source: "featureflag-sdk",
      type: "evaluations",
      evaluations: [
        {
          name: "variant",
          value: false,
          source: "default",
          rejected:
            'Flag "variant" is read as a boolean (useBoolFlag/getBool) but the override is the string "b"; send true or false',
        },
        { name: "on", value: true, source: "override" },
        { name: "lp", value: "a", source: "default" },
      ],
    });
  });

  it("does not report when report is false", async () => {
    const post = vi.spyOn(window, "postMessage");
    make({ report: false }).getBool("x");
    await tick();
    expect(post).not.toHaveBeenCalled();
  });

  it("only ever returns booleans from getBool and strings from getString, whatever plain JS passes", () => {
    const client = make({ initial: { n: true } });
    expect(client.getBool("x", "yes" as unknown as boolean)).toBe(true);
    expect(client.getBool("x", 0 as unknown as boolean)).toBe(false);
    expect(client.getString("x", undefined as unknown as string)).toBe("");
    expect(client.getString("n", "a")).toBe("a");
  });

  it("ignores an answer that arrives after close()", async () => {
    let answer!: (response: Response) => void;
    const client = make({ endpoint: ENDPOINT, fetch: () => new Promise((resolve) => (answer = resolve)) });
    const done = client.refresh();
    client.close();
    answer(flags({ on: true }));
    await done;
    expect(client.getBool("on")).toBe(false);
    expect(client.status).toBe("loading");
  });
});
