import { describe, expect, it } from "vitest";
import {
  API_TOKEN_KEY,
  appliedKey,
  CONFIG_KEY,
  historyKey,
  parseStorageKey,
  type StorageKey,
  storageKey,
  tabKey,
} from "./storage";

describe("storage keys", () => {
  it("are spelled as the stored data expects (renaming one loses users' state)", () => {
    expect(CONFIG_KEY).toBe("config");
    expect(API_TOKEN_KEY).toBe("apiToken");
    expect(tabKey(7)).toBe("tab:7");
    expect(historyKey(7)).toBe("history:7");
    expect(appliedKey("http://a.localhost:1")).toBe("applied:http://a.localhost:1");
  });

  it("parse back to what built them", () => {
    const keys: StorageKey[] = [
      { kind: "config" },
      { kind: "apiToken" },
      { kind: "tab", tabId: 0 },
      { kind: "tab", tabId: 1234567 },
      { kind: "history", tabId: 7 },
      { kind: "applied", origin: "http://a.localhost:1" },
      { kind: "applied", origin: "https://tab:1.example" },
    ];
    for (const key of keys) expect(parseStorageKey(storageKey(key))).toEqual(key);
  });

  it("name each kind apart (an origin can never read as a tab)", () => {
    expect(parseStorageKey(appliedKey("tab:3"))).toEqual({ kind: "applied", origin: "tab:3" });
    expect(parseStorageKey(tabKey(3))?.kind).toBe("tab");
    expect(parseStorageKey(historyKey(3))?.kind).toBe("history");
  });

  it("refuse keys the extension never writes", () => {
    for (const key of ["", "tab:", "tab:x", "tab:-1", "tab:1.5", "history:", "applied:", "Tab:1", "configs", "other"]) {
      expect(parseStorageKey(key)).toBeNull();
    }
  });
});
