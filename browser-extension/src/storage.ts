/**
 * The extension's `chrome.storage` keys, built and parsed here and nowhere else.
 *
 * - `chrome.storage.local`: `config` (the settings) and `applied:<origin>` (the overrides
 *   applied to a site);
 * - `chrome.storage.session`: `tab:<tabId>` (what a tab reported), `history:<tabId>`
 *   (the pages it left, for the back/forward cache) and, only on a Chrome that cannot
 *   lock `chrome.storage.local` to the extension (before 140), `apiToken` (see apitoken.ts).
 *
 * @example
 * const key = storageKey({ kind: "tab", tabId: 7 }); // "tab:7"
 * parseStorageKey(key); // { kind: "tab", tabId: 7 }
 */

/** A storage key, parsed. */
export type StorageKey =
  | { kind: "config" }
  | { kind: "apiToken" }
  | { kind: "applied"; origin: string }
  | { kind: "tab"; tabId: number }
  | { kind: "history"; tabId: number };

/** Every kind of key, each with the one spelling of its prefix. */
const PREFIX = { applied: "applied:", tab: "tab:", history: "history:" } as const;

/** The `chrome.storage.local` key of the settings. */
export const CONFIG_KEY = "config";

/** The `chrome.storage.session` key of the API token, where local storage cannot be locked. */
export const API_TOKEN_KEY = "apiToken";

/** The string a key is stored under. */
export function storageKey(key: StorageKey): string {
  switch (key.kind) {
    case "config":
      return CONFIG_KEY;
    case "apiToken":
      return API_TOKEN_KEY;
    case "applied":
      return PREFIX.applied + key.origin;
    case "tab":
    case "history":
      return PREFIX[key.kind] + String(key.tabId);
  }
}

/** What a stored key names, or null for a key the extension never writes. */
export function parseStorageKey(key: string): StorageKey | null {
  if (key === CONFIG_KEY) return { kind: "config" };
  if (key === API_TOKEN_KEY) return { kind: "apiToken" };
  if (key.startsWith(PREFIX.applied)) {
    const origin = key.slice(PREFIX.applied.length);
    return origin ? { kind: "applied", origin } : null;
  }
  for (const kind of ["tab", "history"] as const) {
    if (!key.startsWith(PREFIX[kind])) continue;
    const digits = key.slice(PREFIX[kind].length);
    // Tab ids are non-negative integers; anything else is not ours.
    return /^\d+$/.test(digits) ? { kind, tabId: Number(digits) } : null;
  }
  return null;
}

/** The `chrome.storage.session` key of a tab's state. */
export function tabKey(tabId: number): string {
  return storageKey({ kind: "tab", tabId });
}

/** The `chrome.storage.session` key of a tab's earlier pages. */
export function historyKey(tabId: number): string {
  return storageKey({ kind: "history", tabId });
}

/** The `chrome.storage.local` key of the overrides applied to `origin`. */
export function appliedKey(origin: string): string {
  return storageKey({ kind: "applied", origin });
}
