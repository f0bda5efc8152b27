/**
 * "Save as fork…": a link to the override service's fork form, prefilled with the page's
 * overrides. The contract with the service (its web page, `GET /forks/new`): one query
 * parameter `flag.<name>` per flag, whose value is the flag's value as a JSON literal, so
 * the form knows its type: `true` / `false` for a switch, `"text"` (quoted) for a string.
 *
 * @example
 * forkFormUrl("http://127.0.0.1:8000", { "new-lp": "b", "Checkout.is_one_click": true });
 * // "http://127.0.0.1:8000/forks/new?flag.Checkout.is_one_click=true&flag.new-lp=%22b%22"
 */
import type { Edits } from "./edits";
import type { FlagValue } from "./report";
import type { FlagRow } from "./state";

/** The prefix of each flag's query parameter. */
export const FLAG_PARAM_PREFIX = "flag.";

/** The service's fork form for `overrides`, in name order (percent-encoded, `%20` for a space). */
export function forkFormUrl(serviceUrl: string, overrides: Readonly<Record<string, FlagValue>>): string {
  const query = Object.keys(overrides)
    .sort()
    .map((name) => {
      const literal = JSON.stringify(overrides[name]);
      return `${encodeURIComponent(FLAG_PARAM_PREFIX + name)}=${encodeURIComponent(literal)}`;
    })
    .join("&");
  return `${serviceUrl}/forks/new${query ? `?${query}` : ""}`;
}

/**
 * The overrides a fork of this page should bake in: the flags the page reports as
 * overridden (whoever set them: the extension, or the fork URL the page is on), then the
 * overrides the popup would apply (`desired`: applied ones and your edits), and without
 * the ones you removed. An override the app rejected is left out (it did not use it)
 * unless you changed it since.
 */
export function pageOverrides(
  rows: readonly FlagRow[],
  desired: Readonly<Record<string, FlagValue>>,
  edits: Edits,
): Record<string, FlagValue> {
  const out: Record<string, FlagValue> = {};
  for (const row of rows) if (row.source === "override") out[row.name] = row.value;
  Object.assign(out, desired);
  for (const row of rows) if (row.rejected !== null && !edits.has(row.name)) delete out[row.name];
  for (const [name, value] of edits) if (value === null) delete out[name];
  return out;
}
