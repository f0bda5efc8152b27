/**
 * Parse the app's response headers: the `Feature-Flags` report (an RFC 9651 List of
 * sf-strings with parameters, plus `route` sf-tokens for routed services) and the
 * `Feature-Flag-Override-Error` refusal token.
 *
 * Parsing is delegated to the `structured-headers` package; this module only maps the
 * parsed structure onto the contract and stays lenient: a garbled header yields nothing
 * rather than an exception in the service worker.
 */
import { DisplayString, parseItem, parseList, Token } from "structured-headers";

/** Where a flag was evaluated: the responding server, a named downstream service, or the page's JS. */
export type Where =
  | { kind: "server" }
  | { kind: "downstream"; service: string }
  | { kind: "frontend" };

/** A flag value: the contract allows booleans and strings only. */
export type FlagValue = boolean | string;

/** One evaluated flag, as reported by a response header or by the front end. */
export interface Evaluation {
  name: string;
  value: FlagValue;
  source: "default" | "override";
  rejected: string | null;
  where: Where;
}

/**
 * A routed service (docs/propagation.md): the fork's token sent requests for `service`
 * to `url`, or asked to and the app refused (`rejected` says why; never followed).
 */
export interface Route {
  service: string;
  /** The route's base URL; null when the app left it out. */
  url: string | null;
  rejected: string | null;
}

/** A parsed `Feature-Flags` header. `omitted` counts flags cut by the app's byte budget. */
export interface Report {
  evaluations: Evaluation[];
  routes: Route[];
  omitted: number;
}

/** The sf-token that names a route item: `route;service="...";url="..."[;rejected="..."]`. */
export const ROUTE_ITEM = "route";

/** The name of the marker item the app appends when it cut the report short. */
export const TRUNCATED_MARKER = "featureflag.truncated";

/** The longest rejection reason kept (the contract caps it at 200 characters). */
const MAX_REASON = 200;

/** An sf-string, or a Display String (`%"..."`, how the app sends text that is not ASCII). */
function text(bare: unknown): string | null {
  if (typeof bare === "string") return bare;
  if (bare instanceof DisplayString) return bare.toString();
  return null;
}

/**
 * A `route` item's parameters as a {@link Route}; null when they break the contract (no
 * service, or a url or rejected that is not text: better no line than a wrong one).
 */
function parseRoute(params: ReadonlyMap<string, unknown>): Route | null {
  const service = text(params.get("service"));
  if (service === null || service === "") return null;
  const rawUrl = params.get("url");
  const url = text(rawUrl);
  if (rawUrl !== undefined && url === null) return null;
  const rawRejected = params.get("rejected");
  const rejected = text(rawRejected);
  if (rawRejected !== undefined && rejected === null) return null;
  return { service, url, rejected: rejected === null ? null : rejected.slice(0, MAX_REASON) };
}

/** Parse one `Feature-Flags` header value. Items that break the contract are skipped. */
export function parseReport(value: string): Report {
  const report: Report = { evaluations: [], routes: [], omitted: 0 };
  let list;
  try {
    list = parseList(value);
  } catch {
    return report;
  }
  for (const member of list) {
    const [bare, params] = member;
    if (bare instanceof Token && bare.toString() === ROUTE_ITEM) {
      const route = parseRoute(params);
      if (route !== null) report.routes.push(route);
      continue;
    }
    const name = text(bare);
    if (name === null || name === "") continue; // an inner list or a non-string item
    if (name === TRUNCATED_MARKER) {
      const omitted = params.get("omitted");
      if (typeof omitted === "number" && Number.isInteger(omitted) && omitted > 0) {
        report.omitted += omitted;
      }
      continue;
    }
    const rawValue = params.get("value");
    const flagValue = typeof rawValue === "boolean" ? rawValue : text(rawValue);
    if (flagValue === null) continue;
    const source = params.get("source");
    const sourceName = source instanceof Token ? source.toString() : null;
    if (sourceName !== "default" && sourceName !== "override") continue;
    const rejected = text(params.get("rejected"));
    const service = text(params.get("service"));
    report.evaluations.push({
      name,
      value: flagValue,
      source: sourceName,
      rejected: rejected === null ? null : rejected.slice(0, MAX_REASON),
      where:
        service !== null && service !== ""
          ? { kind: "downstream", service }
          : { kind: "server" },
    });
  }
  return report;
}

/** The reasons the app may give for refusing a token (contract 2). */
export const REFUSAL_REASONS = {
  expired: "the override token has expired",
  "bad-signature": "the token's signature does not match (tampered, or signed with another secret)",
  "wrong-environment": "the token was minted for another environment",
  malformed: "the cookie is not an override token",
  "too-large": "the token is larger than the app accepts",
  "too-many-flags": "the token overrides more flags than the app accepts",
  "invalid-override": "the token contains an override the app cannot use",
} as const satisfies Record<string, string>;

/** A refusal reason token, e.g. `bad-signature`. */
export type RefusalReason = string;

/** Parse `Feature-Flag-Override-Error` (an sf-token); null when absent or garbled. */
export function parseRefusal(value: string): RefusalReason | null {
  try {
    const [bare] = parseItem(value);
    if (bare instanceof Token) return bare.toString();
    if (typeof bare === "string" && bare !== "") return bare.slice(0, MAX_REASON);
  } catch {
    // fall through: a garbled header says nothing we can show
  }
  return null;
}

/** A human sentence for a refusal reason; unknown reasons are shown as given. */
export function describeRefusal(reason: RefusalReason): string {
  return (REFUSAL_REASONS as Record<string, string>)[reason] ?? reason;
}

/** Label for where a flag was evaluated, as shown in the popup. */
export function whereLabel(where: Where): string {
  switch (where.kind) {
    case "server":
      return "server";
    case "downstream":
      return where.service;
    case "frontend":
      return "front end";
  }
}

/** A stable key for a `Where`, used to merge reports. */
export function whereKey(where: Where): string {
  return where.kind === "downstream" ? `downstream:${where.service}` : where.kind;
}
