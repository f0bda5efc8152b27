/**
 * The extension's settings (`chrome.storage.local`): where the override service is and
 * the developer's API token for it. The signing secret is never here: the service signs.
 */

/** Settings as stored. Empty strings mean "not configured". */
export interface Config {
  serviceUrl: string;
  apiToken: string;
  /** Lifetime of minted tokens, in minutes. */
  ttlMinutes: number;
}

/** A working day: long enough not to nag, short enough to expire overnight. */
export const DEFAULT_TTL_MINUTES = 480;

/** The defaults: nothing configured. */
export const DEFAULT_CONFIG: Config = { serviceUrl: "", apiToken: "", ttlMinutes: DEFAULT_TTL_MINUTES };

/** Read settings from whatever storage gave us, filling gaps with defaults. */
export function readConfig(stored: unknown): Config {
  const raw = (typeof stored === "object" && stored !== null ? stored : {}) as Record<string, unknown>;
  const ttl = raw.ttlMinutes;
  return {
    serviceUrl: typeof raw.serviceUrl === "string" ? raw.serviceUrl : "",
    apiToken: typeof raw.apiToken === "string" ? raw.apiToken : "",
    ttlMinutes:
      typeof ttl === "number" && Number.isInteger(ttl) && ttl > 0 ? ttl : DEFAULT_TTL_MINUTES,
  };
}

/**
 * Normalise a service URL typed by a user: `http(s)://host[:port][/path]`, no trailing
 * slash. Throws an Error whose message says what to fix.
 */
export function normalizeServiceUrl(input: string): string {
  const text = input.trim();
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) {
    throw new Error(`The service URL must start with http:// or https:// (e.g. http://127.0.0.1:8000), got "${text}"`);
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL; enter the override service's address, e.g. http://127.0.0.1:8000`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`The service URL must start with http:// or https:// (got ${url.protocol}//)`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new Error("The service URL must not contain a query, fragment or credentials");
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
}

/** What is missing before overrides can be applied, as sentences for the popup; [] when ready. */
export function missingSettings(config: Config): string[] {
  const missing: string[] = [];
  if (!config.serviceUrl) missing.push("the override service URL (e.g. http://127.0.0.1:8000)");
  if (!config.apiToken) missing.push("your API token for that service (FEATUREFLAG_API_TOKENS on the service)");
  return missing;
}

/** The origin pattern for `chrome.permissions` that lets extension pages call the service. */
export function serviceOriginPattern(serviceUrl: string): string {
  return `${new URL(serviceUrl).origin}/*`;
}
