import { describe, expect, it } from "vitest";
import { type Areas, loadConfig, lockLocal, protectApiToken, saveConfig } from "./apitoken";
import { DEFAULT_TTL_MINUTES } from "./config";
import { type Lock, memoryArea } from "./testing";

const CONFIG = { serviceUrl: "http://127.0.0.1:8000", apiToken: "s3cret", ttlMinutes: DEFAULT_TTL_MINUTES };

function areas(lock: Lock, local: Record<string, unknown> = {}, session: Record<string, unknown> = {}) {
  return { local: memoryArea(local, lock), session: memoryArea(session) } satisfies Areas;
}

describe("the API token's home (issue 17, item 14)", () => {
  it("locks local storage where Chrome can (140+)", async () => {
    const local = memoryArea();
    expect(await lockLocal(local)).toBe(true);
    expect(local.setAccessLevel).toHaveBeenCalledWith({ accessLevel: "TRUSTED_CONTEXTS" });
  });

  it.each(["missing", "rejects", "throws"] as const)("reports an old Chrome (setAccessLevel %s)", async (lock) => {
    expect(await lockLocal(memoryArea({}, lock))).toBe(false);
  });

  it("keeps the token in the locked settings on Chrome 140+", async () => {
    const a = areas("works", { config: CONFIG });
    expect(await protectApiToken(a)).toBe("local");
    expect(a.local.data.get("config")).toEqual(CONFIG);
    expect(a.session.data.has("apiToken")).toBe(false);
    expect(await loadConfig(a)).toEqual(CONFIG);
  });

  it.each(["missing", "rejects", "throws"] as const)(
    "moves the token out of readable local storage on an old Chrome (setAccessLevel %s)",
    async (lock) => {
      const a = areas(lock, { config: CONFIG });
      expect(await protectApiToken(a)).toBe("session");
      // What a content script could read holds no token any more...
      expect(JSON.stringify([...a.local.data])).not.toContain("s3cret");
      expect(a.local.data.get("config")).toEqual({ ...CONFIG, apiToken: "" });
      // ...and the extension's pages still find it.
      expect(a.session.data.get("apiToken")).toBe("s3cret");
      expect(await loadConfig(a)).toEqual(CONFIG);
    },
  );

  it("brings a session token back into the settings once Chrome can lock them", async () => {
    const a = areas("works", { config: { ...CONFIG, apiToken: "" } }, { apiToken: "s3cret" });
    expect(await protectApiToken(a)).toBe("local");
    expect(a.local.data.get("config")).toEqual(CONFIG);
    expect(a.session.data.has("apiToken")).toBe(false);
  });

  it("saves where content scripts cannot read", async () => {
    const old = areas("missing");
    expect(await saveConfig(old, CONFIG)).toBe("session");
    expect(JSON.stringify([...old.local.data])).not.toContain("s3cret");
    expect(await loadConfig(old)).toEqual(CONFIG);
    const current = areas("works", {}, { apiToken: "stale" });
    expect(await saveConfig(current, CONFIG)).toBe("local");
    expect(current.session.data.has("apiToken")).toBe(false);
    expect(await loadConfig(current)).toEqual(CONFIG);
  });

  it("starts with nothing stored", async () => {
    const a = areas("missing");
    expect(await protectApiToken(a)).toBe("session");
    expect(a.local.data.size + a.session.data.size).toBe(0);
  });
});
