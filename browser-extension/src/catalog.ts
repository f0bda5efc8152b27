/**
 * The override service's flag catalog (`GET {serviceUrl}/api/flags`, with the API token:
 * reads need its `read` scope): the popup uses it to offer a flag's choices and to suggest
 * names in "add a flag". Optional: without it (no service or token configured, or the
 * call fails) the popup works the same.
 */
import type { FlagValue } from "./report";

/** One declared flag, as the service lists it (the fields the popup uses). */
export interface CatalogEntry {
  name: string;
  type: "bool" | "str" | null;
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
 * Fetch the catalog with the API token; [] when the service or the token is not
 * configured, or the service does not answer.
 *
 * @example
 * const entries = await fetchCatalog(config.serviceUrl, config.apiToken);
 */
export async function fetchCatalog(
  serviceUrl: string,
  apiToken: string,
  fetchFn: (input: string, init?: RequestInit) => Promise<Response> = fetch,
): Promise<CatalogEntry[]> {
  if (!serviceUrl || !apiToken) return [];
  try {
    const response = await fetchFn(`${serviceUrl}/api/flags`, {
      method: "GET",
      headers: { Authorization: `Bearer ${apiToken}` },
    });
    return response.ok ? readCatalog(await response.json()) : [];
  } catch {
    return [];
  }
}
