/**
 * Applying overrides: mint a token from the override service, describe the cookie that
 * carries it, remember what was applied per site, and say whether it is still active.
 * The browser calls (`fetch`, `chrome.cookies`) are passed in or done by the caller, so
 * all of this runs under vitest.
 */
import type { Config } from "./config";
import type { FlagValue } from "./report";
import { call, type Fetch, failure, notService } from "./service";

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

/** `POST {serviceUrl}/api/tokens`: a signed token for `flags`, valid for `config.ttlMinutes`. */
export async function mintToken(
  config: Config,
  flags: Record<string, FlagValue>,
  fetchFn: Fetch = fetch,
): Promise<{ token: string; expiresAt: number }> {
  const response = await call(fetchFn, config.serviceUrl, "/api/tokens", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${config.apiToken}` },
    body: JSON.stringify({ flags, ttl: config.ttlMinutes * 60 }),
  });
  if (response.status !== 200 && response.status !== 201) throw await failure(config.serviceUrl, "/api/tokens", response);
  let body: { token?: unknown; expires_at?: unknown } = {};
  try {
    body = (await response.json()) as typeof body;
  } catch {
    // not JSON: handled below
  }
  const expiresAt = typeof body.expires_at === "string" ? Date.parse(body.expires_at) : Number.NaN;
  if (typeof body.token !== "string" || body.token === "" || Number.isNaN(expiresAt)) {
    throw notService(config.serviceUrl, "token in the answer of /api/tokens", response.status);
  }
  return { token: body.token, expiresAt };
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
  | { kind: "refused"; reason: string }
  | { kind: "rejected"; flags: string[] };

/**
 * The tab's override status: a refusal by the app wins, then an applied token past its
 * expiry, then overrides the app rejected (`rejected`: the flags its report marks, e.g. a
 * string flag given `true`), then the number of flags the tab's responses report as
 * overridden.
 */
export function overrideStatus(
  applied: Applied | null,
  refusal: string | null,
  overridden: number,
  now: number,
  rejected: readonly string[] = [],
): OverrideStatus {
  if (refusal) return { kind: "refused", reason: refusal };
  if (applied && applied.expiresAt <= now) return { kind: "expired", applied };
  if (rejected.length > 0) return { kind: "rejected", flags: [...rejected] };
  if (overridden > 0) return { kind: "active", count: overridden };
  return { kind: "none" };
}

/** The toolbar button's tooltip when nothing needs saying (the manifest's default_title). */
export const BADGE_TITLE = "Feature flags";

/** The names in a tooltip, the first few of them. */
function names(flags: readonly string[]): string {
  const shown = flags.slice(0, 3).join(", ");
  return flags.length > 3 ? `${shown} and ${flags.length - 3} more` : shown;
}

/**
 * The toolbar badge for a status: the override count, or "!" for a problem, with the
 * button's tooltip saying which.
 */
export function badgeFor(status: OverrideStatus): { text: string; color: string; title: string } {
  switch (status.kind) {
    case "none":
      return { text: "", color: "#1a7f37", title: BADGE_TITLE };
    case "active":
      return { text: String(status.count), color: "#1a7f37", title: `${BADGE_TITLE}: ${status.count} overridden on this page` };
    case "expired":
      return { text: "!", color: "#bf5700", title: `${BADGE_TITLE}: your overrides expired; open to re-apply them` };
    case "refused":
      return {
        text: "!",
        color: "#bf5700",
        title: `${BADGE_TITLE}: the app refused the override token (${status.reason})`,
      };
    case "rejected":
      return {
        text: "!",
        color: "#bf5700",
        title: `${BADGE_TITLE}: the app rejected the override of ${names(status.flags)}; open for the reason`,
      };
  }
}
