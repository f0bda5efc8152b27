/**
 * Applying overrides: mint a token from the override service, describe the cookie that
 * carries it, remember what was applied per site, and say whether it is still active.
 * The browser calls (`fetch`, `chrome.cookies`) are passed in or done by the caller, so
 * all of this runs under vitest.
 */
import type { Config } from "./config";
import type { FlagValue } from "./report";

/** The cookie the app reads the token from (contract 2). */
export const COOKIE_NAME = "featureflag_overrides";

/** What the extension applied to one site, kept in `chrome.storage.local`. */
export interface Applied {
  origin: string;
  flags: Record<string, FlagValue>;
  /** Token expiry, epoch milliseconds. */
  expiresAt: number;
  appliedAt: number;
}

/** The site (origin) a cookie is set for, or null for pages that cannot carry one. */
export function siteOf(url: string | undefined): string | null {
  if (!url) return null;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.origin : null;
  } catch {
    return null;
  }
}

/** An error from talking to the override service; the message says what to do. */
export class ServiceError extends Error {
  constructor(
    message: string,
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = "ServiceError";
  }
}

type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

async function detail(response: Response): Promise<string> {
  try {
    // The service answers {"error": "<code>", "message": "<sentence>", "errors": [...]}.
    const body = (await response.json()) as { detail?: unknown; error?: unknown; message?: unknown };
    const text = body.message ?? body.detail ?? body.error;
    if (typeof text === "string") return text;
    if (text !== undefined) return JSON.stringify(text);
  } catch {
    // not JSON: fall back to the status line
  }
  return `HTTP ${response.status}`;
}

async function call(fetchFn: Fetch, url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetchFn(url, init);
  } catch {
    throw new ServiceError(`Cannot reach the override service at ${url}; is it running, and is the URL in Options right?`);
  }
}

/** Turn a non-2xx answer of an authenticated call into a ServiceError that names the fix. */
async function refuse(response: Response): Promise<never> {
  if (response.status === 401 || response.status === 403) {
    throw new ServiceError(
      `The override service refused the API token (HTTP ${response.status}); check it in Options`,
      response.status,
    );
  }
  throw new ServiceError(`The override service said: ${await detail(response)}`, response.status);
}

/** `POST {serviceUrl}/api/tokens`: a signed token for `flags`, valid for `config.ttlMinutes`. */
export async function mintToken(
  config: Config,
  flags: Record<string, FlagValue>,
  fetchFn: Fetch = fetch,
): Promise<{ token: string; expiresAt: number }> {
  const response = await call(fetchFn, `${config.serviceUrl}/api/tokens`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${config.apiToken}` },
    body: JSON.stringify({ flags, ttl: config.ttlMinutes * 60 }),
  });
  if (response.status !== 200 && response.status !== 201) return refuse(response);
  const body = (await response.json()) as { token?: unknown; expires_at?: unknown };
  const expiresAt = typeof body.expires_at === "string" ? Date.parse(body.expires_at) : Number.NaN;
  if (typeof body.token !== "string" || body.token === "" || Number.isNaN(expiresAt)) {
    throw new ServiceError("The override service answered without a token; is the URL in Options the override service?");
  }
  return { token: body.token, expiresAt };
}

/** Check the settings: `GET /healthz`, then an authenticated call (a token with no flags). */
export async function testConnection(config: Config, fetchFn: Fetch = fetch): Promise<string> {
  const health = await call(fetchFn, `${config.serviceUrl}/healthz`, { method: "GET" });
  let status: unknown = null;
  try {
    status = ((await health.json()) as { status?: unknown }).status;
  } catch {
    // handled below
  }
  if (!health.ok || status !== "ok") {
    throw new ServiceError(`${config.serviceUrl}/healthz did not answer {"status": "ok"} (HTTP ${health.status}); is this the override service?`, health.status);
  }
  if (!config.apiToken) return "The service is up; set your API token to apply overrides.";
  await mintToken({ ...config, ttlMinutes: 1 }, {}, fetchFn);
  return "Connected: the service is up and accepts your API token.";
}

/** The `chrome.cookies.set` details that put `token` on the tab's site. */
export function cookieDetails(origin: string, token: string, expiresAt: number): chrome.cookies.SetDetails {
  return {
    url: `${origin}/`,
    name: COOKIE_NAME,
    value: token,
    path: "/",
    // The page's JS never needs the token; the app and its OFREP endpoint read it server-side.
    httpOnly: true,
    secure: origin.startsWith("https:"),
    sameSite: "lax",
    expirationDate: Math.floor(expiresAt / 1000),
  };
}

/** What the popup and the badge say about the overrides on a tab. */
export type OverrideStatus =
  | { kind: "none" }
  | { kind: "active"; count: number }
  | { kind: "expired"; applied: Applied }
  | { kind: "refused"; reason: string };

/**
 * The tab's override status: a refusal by the app wins, then an applied token past its
 * expiry, then the number of flags the tab's responses report as overridden.
 */
export function overrideStatus(
  applied: Applied | null,
  refusal: string | null,
  overridden: number,
  now: number,
): OverrideStatus {
  if (refusal) return { kind: "refused", reason: refusal };
  if (applied && applied.expiresAt <= now) return { kind: "expired", applied };
  if (overridden > 0) return { kind: "active", count: overridden };
  return { kind: "none" };
}

/** The toolbar badge for a status: the override count, or "!" for a problem. */
export function badgeFor(status: OverrideStatus): { text: string; color: string } {
  switch (status.kind) {
    case "none":
      return { text: "", color: "#1a7f37" };
    case "active":
      return { text: String(status.count), color: "#1a7f37" };
    case "expired":
    case "refused":
      return { text: "!", color: "#bf5700" };
  }
}
