/**
 * The service worker starts on every Chrome the manifest allows (116+): issue 17, item 14.
 * `chrome.storage.local.setAccessLevel` exists only from Chrome 140; a bare call to it at
 * the top of the worker threw, and a worker that throws while starting never runs.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { DEFAULT_TTL_MINUTES } from "./config";
import { memoryArea } from "./testing";

const CONFIG = { serviceUrl: "http://127.0.0.1:8000", apiToken: "s3cret", ttlMinutes: DEFAULT_TTL_MINUTES };

function event() {
  return { addListener: vi.fn() };
}

/** Just enough of `chrome` for background.ts to register its listeners. */
function fakeChrome(lock: "missing" | "works") {
  const local = memoryArea({ config: CONFIG }, lock);
  const session = memoryArea();
  const chrome = {
    storage: { local, session, onChanged: event() },
    webRequest: { onHeadersReceived: event() },
    runtime: { id: "featureflag", onMessage: event(), onInstalled: event() },
    tabs: { onUpdated: event(), onRemoved: event() },
    permissions: { onAdded: event(), onRemoved: event(), getAll: async () => ({ origins: [] }) },
    scripting: { getRegisteredContentScripts: async () => [], registerContentScripts: vi.fn() },
    action: { setBadgeText: vi.fn(), setBadgeBackgroundColor: vi.fn(), setTitle: vi.fn() },
  };
  return { chrome, local, session };
}

afterEach(() => {
  vi.unstubAllGlobals();
  vi.resetModules();
});

describe("the background worker", () => {
  it("starts on Chrome 116-139, where storage.local.setAccessLevel is undefined", async () => {
    const { chrome, local, session } = fakeChrome("missing");
    vi.stubGlobal("chrome", chrome);
    await import("./background"); // threw TypeError before the fix
    expect(chrome.webRequest.onHeadersReceived.addListener).toHaveBeenCalledOnce();
    expect(chrome.runtime.onMessage.addListener).toHaveBeenCalledOnce();
    // The fallback: the token leaves the storage content scripts can read.
    await vi.waitFor(() => expect(session.data.get("apiToken")).toBe("s3cret"));
    expect(local.data.get("config")).toEqual({ ...CONFIG, apiToken: "" });
  });

  it("locks local storage on Chrome 140+ and leaves the token there", async () => {
    const { chrome, local, session } = fakeChrome("works");
    vi.stubGlobal("chrome", chrome);
    await import("./background");
    await vi.waitFor(() => expect(local.setAccessLevel).toHaveBeenCalledWith({ accessLevel: "TRUSTED_CONTEXTS" }));
    expect(local.data.get("config")).toEqual(CONFIG);
    expect(session.data.size).toBe(0);
  });
});
