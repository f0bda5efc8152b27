import type { FlagValue } from "./types";

/**
 * The path of the OFREP bulk evaluation endpoint the Python middleware serves.
 *
 * @example
 * createClient({ endpoint: "https://shop.example.com" + OFREP_PATH });
 */
export const OFREP_PATH = "/ofrep/v1/evaluate/flags";

/** What one bulk evaluation request produced. */
export type FetchResult =
  | { kind: "flags"; flags: Map<string, FlagValue>; etag: string | null }
  | { kind: "not-modified" }
  | { kind: "failed"; problem: string };

/** The options {@link fetchFlags} needs; a subset of the client's options. */
export interface FetchOptions {
  endpoint: string;
  fetch: typeof fetch;
  headers: Record<string, string>;
  credentials: RequestCredentials;
  context: Record<string, unknown>;
  timeoutMs: number;
  etag: string | null;
}

/**
 * Parse an OFREP bulk evaluation body (`{"flags": [{"key", "value", ...}]}`) into a map.
 * Entries that carry an `errorCode` or a value that is neither boolean nor string are skipped.
 * Returns a string describing the problem when the body is not an OFREP answer at all.
 * Useful to turn an OFREP body the server embedded in the page into `initial` values.
 *
 * @example
 * const parsed = parseBulkResponse(window.__OFREP__);
 * const initial = typeof parsed === "string" ? {} : Object.fromEntries(parsed);
 */
export function parseBulkResponse(body: unknown): Map<string, FlagValue> | string {
  if (typeof body !== "object" || body === null || !Array.isArray((body as { flags?: unknown }).flags)) {
    return 'the body is not an OFREP bulk answer ({"flags": [...]})';
  }
  const flags = new Map<string, FlagValue>();
  for (const item of (body as { flags: unknown[] }).flags) {
    if (typeof item !== "object" || item === null) continue;
    const { key, value, errorCode } = item as { key?: unknown; value?: unknown; errorCode?: unknown };
    if (typeof key !== "string" || errorCode !== undefined) continue;
    if (typeof value === "boolean" || typeof value === "string") flags.set(key, value);
  }
  return flags;
}

/**
 * POST the OFREP bulk evaluation request, honouring ETag / If-None-Match.
 * Never throws: a network failure, a timeout or a bad answer comes back as `failed`.
 */
export async function fetchFlags(options: FetchOptions): Promise<FetchResult> {
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    Accept: "application/json",
    ...options.headers,
  };
  if (options.etag !== null) headers["If-None-Match"] = options.etag;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs);
  try {
    const response = await options.fetch(options.endpoint, {
      method: "POST",
      headers,
      body: JSON.stringify({ context: options.context }),
      credentials: options.credentials,
      signal: abort.signal,
    });
    if (response.status === 304 && options.etag !== null) return { kind: "not-modified" };
    if (response.status !== 200) {
      return { kind: "failed", problem: `it answered HTTP ${response.status}` };
    }
    let body: unknown;
    try {
      body = await response.json();
    } catch {
      return { kind: "failed", problem: "its answer is not JSON" };
    }
    const flags = parseBulkResponse(body);
    if (typeof flags === "string") return { kind: "failed", problem: flags };
    return { kind: "flags", flags, etag: response.headers.get("ETag") };
  } catch (error) {
    const problem = abort.signal.aborted
      ? `it did not answer within ${options.timeoutMs} ms`
      : `the request failed (${error instanceof Error ? error.message : String(error)})`;
    return { kind: "failed", problem };
  } finally {
    clearTimeout(timer);
  }
}
