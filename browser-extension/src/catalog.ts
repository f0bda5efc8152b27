/**
 * The override service's flag catalog (`GET {serviceUrl}/api/flags`, an open read): the
 * popup uses it to offer a flag's choices and to suggest names in "add a flag". Optional:
 * without it (no service configured, or the call fails) the popup works the same.
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

/** Fetch the catalog; [] when the service is not configured or does not answer. */
export async function fetchCatalog(
  serviceUrl: string,
  fetchFn: (input: string, init?: RequestInit) => Promise<Response> = fetch,
): Promise<CatalogEntry[]> {
  if (!serviceUrl) return [];
  try {
    const response = await fetchFn(`${serviceUrl}/api/flags`, { method: "GET" });
    return response.ok ? readCatalog(await response.json()) : [];
  } catch {
    return [];
  }
}
