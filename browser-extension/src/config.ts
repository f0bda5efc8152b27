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
  if (!config.apiToken) missing.push("your API token for that service");
  return missing;
}

/** A FEATUREFLAG_API_TOKENS entry's name (server/featureflag_server/settings.py `_TOKEN_NAME`). */
const TOKEN_NAME = /^[A-Za-z0-9_.@-]{1,64}$/;
/** The scope list at the end of a scoped entry, `name:token:read+forks` (settings.py `_SCOPE_LIST`). */
const SCOPE_LIST = /^[a-z]+(?:\+[a-z]+)*$/;

/**
 * What is wrong with a pasted API token that looks like the service's configuration rather
 * than a token, or null. The service reads FEATUREFLAG_API_TOKENS as comma-separated
 * `name:token` entries, optionally scoped (`name:token:read+forks`), and expects only the
 * `token` part in `Authorization: Bearer`. `token` is that part when one entry was pasted
 * (null for a whole list: which entry is yours is not for the extension to guess).
 *
 * A real token could contain a colon (the service allows it, though the tokens it tells you
 * to generate never do), so the options page asks rather than strips: see options.ts.
 *
 * @example
 * pastedTokenEntry("demo:Zx81..."); // { name: "demo", token: "Zx81...", scopes: null, message: "..." }
 * pastedTokenEntry("Zx81..."); // null
 */
export function pastedTokenEntry(
  value: string,
): { name: string | null; token: string | null; scopes: string | null; message: string } | null {
  const text = value.trim();
  const entries = text.split(",").filter((item) => item.trim() !== "");
  if (entries.length > 1) {
    return {
      name: null,
      token: null,
      scopes: null,
      message:
        "This looks like the whole FEATUREFLAG_API_TOKENS list (name:token entries separated by commas), " +
        "not a token: paste only your own token, the part after the colon of your entry.",
    };
  }
  const entry = (entries[0] ?? "").trim();
  const colon = entry.indexOf(":");
  if (colon < 0) return null;
  const name = entry.slice(0, colon);
  let token = entry.slice(colon + 1);
  if (!TOKEN_NAME.test(name) || token === "") return null;
  let scopes: string | null = null;
  const last = token.lastIndexOf(":");
  if (last > 0 && SCOPE_LIST.test(token.slice(last + 1))) {
    scopes = token.slice(last + 1);
    token = token.slice(0, last);
  }
  const without = scopes === null ? "" : ` and without the ":${scopes}" at its end (the service keeps the scopes)`;
  return {
    name,
    token,
    scopes,
    message:
      `This looks like a FEATUREFLAG_API_TOKENS entry ("${name}:…"), not a token: ` +
      `paste only the token, the part after "${name}:"${without}.`,
  };
}

/** The origin pattern for `chrome.permissions` that lets extension pages call the service. */
export function serviceOriginPattern(serviceUrl: string): string {
  return `${new URL(serviceUrl).origin}/*`;
}

/**
 * True for a host that never leaves this machine: `localhost` (and `*.localhost`, which
 * Chrome answers with loopback itself), 127.0.0.0/8 and `[::1]`. `hostname` is a URL's,
 * already canonical (`http://2130706433/` and `http://127.1/` read as 127.0.0.1).
 */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase().replace(/\.$/, "");
  if (host === "localhost" || host.endsWith(".localhost") || host === "[::1]") return true;
  const octets = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(host);
  return octets !== null && octets[1] === "127" && octets.slice(2).every((o) => Number(o) <= 255);
}

/**
 * The warning to show before the API token is sent to `serviceUrl` in clear text, or null
 * (https://, a loopback host, or no token to send).
 *
 * @example
 * plainHttpWarning("http://flags.qa.example.com", "t0ken"); // "flags.qa.example.com is …"
 * plainHttpWarning("http://127.0.0.1:8000", "t0ken"); // null
 */
export function plainHttpWarning(serviceUrl: string, apiToken: string): string | null {
  if (!serviceUrl || !apiToken) return null;
  let url: URL;
  try {
    url = new URL(serviceUrl);
  } catch {
    return null; // normalizeServiceUrl says what is wrong with it
  }
  if (url.protocol !== "http:" || isLoopbackHost(url.hostname)) return null;
  return (
    `${url.host} is reached over plain http://: your API token would cross the network unencrypted, ` +
    "and anyone on the way could read it and mint override tokens (or change forks) as you. " +
    "Use an https:// URL for a service on another machine, or send it anyway only on a network you trust."
  );
}
