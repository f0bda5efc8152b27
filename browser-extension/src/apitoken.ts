/**
 * Where the API token is kept: out of reach of content scripts, on every Chrome the
 * manifest allows (116+).
 *
 * Content scripts run inside web pages and never need the token, but by default they may
 * read `chrome.storage.local`. From Chrome 140, `chrome.storage.local.setAccessLevel`
 * locks local storage to the extension's own pages and worker ("trusted contexts"), and
 * the token stays in the settings there. Before 140 that call does not exist (or is
 * refused), so the token goes to `chrome.storage.session` instead: trusted contexts only
 * by default (since Chrome 102), kept in memory, forgotten when the browser quits. The
 * options page says so, and the user enters the token again after a restart.
 *
 * @example
 * await protectApiToken(chrome.storage); // the worker, at start
 * const config = await loadConfig(chrome.storage); // the popup and the options page
 * const home = await saveConfig(chrome.storage, config); // "local" | "session"
 */
import { type Config, readConfig } from "./config";
import { API_TOKEN_KEY, CONFIG_KEY } from "./storage";

/** The part of a `chrome.storage` area used here (tests pass in-memory ones). */
export interface Area {
  get(keys: string | string[]): Promise<Record<string, unknown>>;
  set(items: Record<string, unknown>): Promise<void>;
  remove(keys: string | string[]): Promise<void>;
  /** Missing before Chrome 102, and refused (or missing) for `local` before 140. */
  setAccessLevel?: (options: { accessLevel: "TRUSTED_CONTEXTS" }) => Promise<void>;
}

/** `chrome.storage`, as far as the token is concerned. */
export interface Areas {
  local: Area;
  session: Area;
}

/** Where the token lives on this browser: persistent, or until the browser quits. */
export type TokenHome = "local" | "session";

/**
 * Lock `chrome.storage.local` to trusted contexts. False where this Chrome cannot (the
 * method is missing, throws or rejects): then nothing secret may be stored there.
 */
export async function lockLocal(local: Area): Promise<boolean> {
  if (typeof local.setAccessLevel !== "function") return false;
  try {
    await local.setAccessLevel({ accessLevel: "TRUSTED_CONTEXTS" });
    return true;
  } catch {
    return false;
  }
}

/**
 * At the worker's start: lock local storage, or, where it cannot be locked, move a token
 * found in the local settings into session storage. After a Chrome update to 140+, a
 * token kept in the session moves back into the (now locked) settings.
 */
export async function protectApiToken(areas: Areas): Promise<TokenHome> {
  const locked = await lockLocal(areas.local);
  const [local, session] = await Promise.all([areas.local.get(CONFIG_KEY), areas.session.get(API_TOKEN_KEY)]);
  const config = readConfig(local[CONFIG_KEY]);
  const kept = session[API_TOKEN_KEY];
  if (locked) {
    if (typeof kept === "string" && kept && !config.apiToken) {
      await areas.local.set({ [CONFIG_KEY]: { ...config, apiToken: kept } });
    }
    if (kept !== undefined) await areas.session.remove(API_TOKEN_KEY);
    return "local";
  }
  if (config.apiToken) {
    // Session first: the token is never in neither place.
    await areas.session.set({ [API_TOKEN_KEY]: config.apiToken });
    await areas.local.set({ [CONFIG_KEY]: { ...config, apiToken: "" } });
  }
  return "session";
}

/** The settings, with the token from wherever this browser keeps it. */
export async function loadConfig(areas: Areas): Promise<Config> {
  const [local, session] = await Promise.all([areas.local.get(CONFIG_KEY), areas.session.get(API_TOKEN_KEY)]);
  const config = readConfig(local[CONFIG_KEY]);
  const kept = session[API_TOKEN_KEY];
  return config.apiToken || typeof kept !== "string" ? config : { ...config, apiToken: kept };
}

/** Store the settings; the token goes where content scripts cannot read it. */
export async function saveConfig(areas: Areas, config: Config): Promise<TokenHome> {
  if (await lockLocal(areas.local)) {
    await areas.local.set({ [CONFIG_KEY]: config });
    await areas.session.remove(API_TOKEN_KEY);
    return "local";
  }
  await areas.session.set({ [API_TOKEN_KEY]: config.apiToken });
  await areas.local.set({ [CONFIG_KEY]: { ...config, apiToken: "" } });
  return "session";
}
