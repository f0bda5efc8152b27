/**
 * Talking to the override service: what went wrong, in words that fit both the popup and
 * the options page (neither says "in Options": the popup adds a link to it), and the
 * options page's "Test connection".
 *
 * The cases told apart: nothing answers at the URL (`unreachable`); something answers but
 * is not a featureflag override service, e.g. the app's own URL (`not-service`); the
 * service does not know the API token (`unauthorized`, 401); the token lacks a scope
 * (`forbidden`, 403); the service refused the request itself (`refused`, another 4xx,
 * with its own message); the service failed (`failed`, 5xx or an answer it never gives).
 *
 * @example
 * try {
 *   await mintToken(config, flags);
 * } catch (error) {
 *   if (error instanceof ServiceError && error.inSettings) showOptionsLink();
 * }
 */
import type { Config } from "./config";

/** What went wrong when calling the service (see the module docstring). */
export type ServiceProblem = "unreachable" | "not-service" | "unauthorized" | "forbidden" | "refused" | "failed";

/** An error from talking to the override service; the message says what to do. */
export class ServiceError extends Error {
  constructor(
    message: string,
    readonly problem: ServiceProblem,
    readonly status: number | null = null,
  ) {
    super(message);
    this.name = "ServiceError";
  }

  /** True when the fix is in the settings (the service URL or the API token). */
  get inSettings(): boolean {
    return this.problem !== "refused" && this.problem !== "failed";
  }
}

/** `fetch`, or a test double. */
export type Fetch = (input: string, init?: RequestInit) => Promise<Response>;

/** The service's own sentence from an error body, or null when the body is not its JSON. */
async function serviceMessage(response: Response): Promise<string | null> {
  try {
    // The service answers {"error": "<code>", "message": "<sentence>", "errors": [...]}.
    const body = (await response.json()) as { detail?: unknown; error?: unknown; message?: unknown };
    const text = body.message ?? body.detail ?? body.error;
    if (typeof text === "string") return text;
    if (text !== undefined) return JSON.stringify(text);
  } catch {
    // not JSON
  }
  return null;
}

/** `fetchFn(url, init)`, or a ServiceError saying nothing answers at `serviceUrl`. */
export async function call(fetchFn: Fetch, serviceUrl: string, path: string, init: RequestInit): Promise<Response> {
  try {
    return await fetchFn(`${serviceUrl}${path}`, init);
  } catch {
    throw new ServiceError(
      `Cannot reach the override service at ${serviceUrl}: nothing answers there. Is it running, and is the service URL right?`,
      "unreachable",
    );
  }
}

/** The error for an answer that shows `serviceUrl` is not the override service. */
export function notService(serviceUrl: string, missing: string, status: number): ServiceError {
  return new ServiceError(
    `${serviceUrl} answers, but is not a featureflag override service (no ${missing}: HTTP ${status}). ` +
      "Is it your app's address? The service URL is where featureflag-server runs (http://127.0.0.1:8000 in the demo).",
    "not-service",
    status,
  );
}

/** Turn a non-2xx answer of `path` into a ServiceError that names the fix. */
export async function failure(serviceUrl: string, path: string, response: Response): Promise<ServiceError> {
  const { status } = response;
  if (status === 404 || status === 405) return notService(serviceUrl, path, status);
  const said = await serviceMessage(response);
  if (status === 401) {
    return new ServiceError(
      "The override service refused the API token (HTTP 401): it is not one of the service's " +
        "FEATUREFLAG_API_TOKENS. Enter only the token, the part after the colon of your name:token entry.",
      "unauthorized",
      status,
    );
  }
  if (status === 403) {
    return new ServiceError(
      `The override service refused the API token (HTTP 403): ${said ?? "it lacks a scope this needs"}`,
      "forbidden",
      status,
    );
  }
  if (status >= 400 && status < 500) {
    return new ServiceError(`The override service said: ${said ?? `HTTP ${status}`}`, "refused", status);
  }
  return new ServiceError(`The override service failed: ${said ?? `HTTP ${status}`}`, "failed", status);
}

/** What "Test connection" found: all good (`info`), or working with a caveat (`warn`). */
export interface ConnectionReport {
  kind: "info" | "warn";
  text: string;
}

/**
 * Check the settings, and throw a ServiceError that says which case it is: `GET /healthz`
 * (`{"status": "ok"}`), then `POST /api/tokens` for a token with no flags (with the API
 * token; without one, unauthenticated, which the service answers 401 and an app 404),
 * then `GET /api/flags` (the catalog, which needs the `read` scope).
 */
export async function testConnection(config: Config, fetchFn: Fetch = fetch): Promise<ConnectionReport> {
  const { serviceUrl, apiToken } = config;
  const health = await call(fetchFn, serviceUrl, "/healthz", { method: "GET" });
  if (health.status >= 500) throw await failure(serviceUrl, "/healthz", health);
  let status: unknown = null;
  try {
    status = ((await health.json()) as { status?: unknown }).status;
  } catch {
    // not JSON: not the service's /healthz
  }
  if (!health.ok || status !== "ok") throw notService(serviceUrl, "/healthz", health.status);

  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (apiToken) headers.Authorization = `Bearer ${apiToken}`;
  const mint = await call(fetchFn, serviceUrl, "/api/tokens", {
    method: "POST",
    headers,
    body: JSON.stringify({ flags: {}, ttl: 60 }),
  });
  if (!apiToken) {
    // The service asks for a token; an app with a /healthz of its own has no /api/tokens.
    if (mint.status === 401) return { kind: "info", text: "The service is up; set your API token to apply overrides." };
    throw await failure(serviceUrl, "/api/tokens", mint);
  }
  if (mint.status !== 200 && mint.status !== 201) throw await failure(serviceUrl, "/api/tokens", mint);

  const catalog = await call(fetchFn, serviceUrl, "/api/flags", { method: "GET", headers });
  if (catalog.status === 403) {
    return {
      kind: "warn",
      text:
        "Connected: the service is up and your API token may apply overrides, but it lacks the read scope, " +
        "so the popup cannot offer the catalog's choices or suggest flag names.",
    };
  }
  return { kind: "info", text: "Connected: the service is up and accepts your API token." };
}
