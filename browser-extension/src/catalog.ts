/**
 * The override service's flag catalog (`GET {serviceUrl}/api/flags`, with the API token:
 * reads need its `read` scope): the popup uses it to offer a flag's choices and to suggest
 * names and types in "add a flag". Optional: without it (no service or token configured,
 * or the call fails) the popup works the same with text fields for string flags, and
 * says why when the call failed.
 */
import type { FlagValue } from "./report";

/** A flag's value type, in the catalog's words: `bool` (on/off) or `str` (text). */
export type FlagType = "bool" | "str";

/** One declared flag, as the service lists it (the fields the popup uses). */
export interface CatalogEntry {
  name: string;
  type: FlagType | null;
  choices: string[] | null;
  default: FlagValue | null;
  description: string | null;
}

/** Read `{"flags": [...]}` leniently: entries that do not fit are skipped. */
export function readCatalog(body: unknown): CatalogEntry[] {
  const flags = (body as { flags?: unknown } | null)?.flags;
  if (!Array.isArray(flags)) return [];
  const out: CatalogEntry[] = [];
  for (const raw of flags) {
    if (typeof raw !== "object" || raw === null) continue;
    const e = raw as Record<string, unknown>;
    if (typeof e.name !== "string" || e.name === "") continue;
    const choices = Array.isArray(e.choices) && e.choices.every((c) => typeof c === "string") ? (e.choices as string[]) : null;
    out.push({
      name: e.name,
      type: e.type === "bool" || e.type === "str" ? e.type : null,
      choices,
      default: typeof e.default === "boolean" || typeof e.default === "string" ? e.default : null,
      description: typeof e.description === "string" && e.description !== "" ? e.description : null,
    });
  }
  return out;
}

/**
 * The catalog, or why there is none: `problem` is a sentence for the popup when the service
 * is configured but the catalog could not be read (string flags then show a text field
 * instead of their choices, and the popup must say why); null when it was read, or when
 * no service or token is configured (the popup says what to set).
 */
export interface CatalogResult {
  entries: CatalogEntry[];
  problem: string | null;
}

const UNAVAILABLE = "choices unavailable (string flags show a text field instead of their choices)";

/**
 * Fetch the catalog with the API token.
 *
 * @example
 * const { entries, problem } = await fetchCatalog(config.serviceUrl, config.apiToken);
 */
export async function fetchCatalog(
  serviceUrl: string,
  apiToken: string,
  fetchFn: (input: string, init?: RequestInit) => Promise<Response> = fetch,
): Promise<CatalogResult> {
  if (!serviceUrl || !apiToken) return { entries: [], problem: null };
  let response: Response;
  try {
    response = await fetchFn(`${serviceUrl}/api/flags`, {
      method: "GET",
      headers: { Authorization: `Bearer ${apiToken}` },
    });
  } catch {
    return { entries: [], problem: `Override service unreachable: ${UNAVAILABLE}.` };
  }
  if (response.status === 401) {
    return { entries: [], problem: `The override service refused the API token (HTTP 401): ${UNAVAILABLE}.` };
  }
  if (response.status === 403) {
    return { entries: [], problem: `The API token lacks the read scope the flag catalog needs: ${UNAVAILABLE}.` };
  }
  if (!response.ok) {
    return { entries: [], problem: `The override service did not give its flag catalog (HTTP ${response.status}): ${UNAVAILABLE}.` };
  }
  try {
    return { entries: readCatalog(await response.json()), problem: null };
  } catch {
    return { entries: [], problem: `The override service's flag catalog is not JSON: ${UNAVAILABLE}.` };
  }
}
