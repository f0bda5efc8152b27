/**
 * The popup's edits: which overrides Apply will ask for. Starts from what is applied to
 * the site (while its token is valid) and layers the user's changes on top.
 */
import type { FlagType } from "./catalog";
import type { Applied } from "./overrides";
import type { FlagValue } from "./report";

/** A change the user made in the popup: a new value, or `null` to drop the override. */
export type Edits = Map<string, FlagValue | null>;

/** Names the report uses for its own items (the SDK's `featureflag.headers.RESERVED_NAMES`). */
const RESERVED_NAMES: ReadonlySet<string> = new Set(["featureflag.route", "featureflag.truncated"]);

/** Same rule as the Python SDK's `NAME_RULE`. */
export const NAME_RULE =
  "a flag name is a non-empty string of at most 200 characters with no whitespace, control characters or lone surrogates, " +
  "and not one of the report's own: featureflag.route, featureflag.truncated";

// Mirrors featureflag/_names.py: \s (Unicode whitespace), C0, DEL and C1 controls, and
// surrogates: with the u flag a valid pair is one code point, so only a lone half matches.
const BAD_NAME = /[\s\u0000-\u001f\u007f-\u009f\uD800-\uDFFF]/u;

/** True when `name` follows the SDK's flag name rule. */
export function isValidName(name: string): boolean {
  return name.length > 0 && name.length <= 200 && !BAD_NAME.test(name) && !RESERVED_NAMES.has(name);
}

/** The overrides that Apply will request: applied ones (unless expired) plus edits. */
export function desiredOverrides(applied: Applied | null, edits: Edits, now: number): Record<string, FlagValue> {
  const out: Record<string, FlagValue> = {};
  if (applied && applied.expiresAt > now) Object.assign(out, applied.flags);
  for (const [name, value] of edits) {
    if (value === null) delete out[name];
    else out[name] = value;
  }
  return out;
}

/** Do two override sets differ (so Apply has something to do)? */
export function sameOverrides(a: Record<string, FlagValue>, b: Record<string, FlagValue>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && b[k] === a[k]);
}

/** The type of a value. */
export function typeOf(value: FlagValue): FlagType {
  return typeof value === "boolean" ? "bool" : "str";
}

/** A flag's known type and where it is known from. */
export interface KnownType {
  type: FlagType;
  from: "page" | "catalog";
}

/**
 * What "add a flag by name" knows of `name`'s type: the value the page reported for it
 * (what the app really evaluates; front-end flags are never in the catalog), else the
 * service's catalog; null when neither knows the flag.
 */
export function knownType(
  name: string,
  reported: ReadonlyMap<string, FlagValue>,
  catalogType: FlagType | null | undefined,
): KnownType | null {
  const value = reported.get(name);
  if (value !== undefined) return { type: typeOf(value), from: "page" };
  return catalogType ? { type: catalogType, from: "catalog" } : null;
}

/**
 * Why adding `name` with `value` is refused: the flag is known to be of the other type
 * (the app would reject the override and use its default). Null when it fits.
 *
 * @example
 * addRefusal("promo-banner", true, { type: "str", from: "page" });
 * // 'promo-banner is a text flag (the page reported a text value): choose "text…" and type the value'
 */
export function addRefusal(name: string, value: FlagValue, known: KnownType | null): string | null {
  if (known === null || typeOf(value) === known.type) return null;
  const from = known.from === "page" ? "the page reported" : "the catalog declares";
  return known.type === "str"
    ? `${name} is a text flag (${from} a text value): choose "text…" and type the value`
    : `${name} is an on/off flag (${from} true or false): choose on or off`;
}
