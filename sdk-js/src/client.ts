import { resolve } from "./evaluate";
import { fetchFlags, OFREP_PATH } from "./ofrep";
import { createReporter, type Reporter } from "./report";
import type { ClientStatus, Evaluation, EvaluationDetails, FlagValue } from "./types";

/**
 * Options for {@link createClient}. Every one is optional in a browser.
 *
 * @example
 * const options: ClientOptions = { endpoint: "https://app.example.com/ofrep/v1/evaluate/flags" };
 */
export interface ClientOptions {
  /** The OFREP bulk endpoint. Default: the page's origin + `/ofrep/v1/evaluate/flags`. */
  endpoint?: string;
  /** A `fetch` to use (tests, Node, a wrapper that adds the token header). Default: global `fetch`. */
  fetch?: typeof fetch;
  /** Extra request headers, e.g. `{"Feature-Flag-Overrides": token}` outside a browser. */
  headers?: Record<string, string>;
  /** `fetch` credentials mode; the default `same-origin` sends the override cookie to the page's origin. */
  credentials?: RequestCredentials;
  /** The OFREP evaluation context sent in the body. Default `{}` (overrides ignore it). */
  context?: Record<string, unknown>;
  /** Values the server already evaluated (SSR), used until the first answer. */
  initial?: Readonly<Record<string, FlagValue>>;
  /** Post evaluations to the extension (browser only). Default `true`. */
  report?: boolean;
  /** Give up on a request after this many milliseconds. Default 10000. */
  timeoutMs?: number;
  /** Where the single warning goes. Default `console.warn`. */
  warn?: (message: string) => void;
}

/**
 * A framework-free flag client. Reads never throw and never wait: they answer from what
 * the last good answer said (or `initial`), else from the default.
 *
 * @example
 * const client = createClient();
 * await client.refresh();
 * if (client.getBool("new-checkout")) showNewCheckout();
 */
export interface FeatureFlagClient {
  /** The boolean value of `name`: the override when it is a boolean, otherwise `defaultValue`. */
  getBool(name: string, defaultValue?: boolean): boolean;
  /** The string value of `name`: the override when it is a string, otherwise `defaultValue`. */
  getString(name: string, defaultValue: string): string;
  /** {@link getBool} with OpenFeature-style details; `{report: false}` skips reporting. */
  getBoolDetails(name: string, defaultValue?: boolean, options?: { report?: boolean }): EvaluationDetails<boolean>;
  /** {@link getString} with OpenFeature-style details; `{report: false}` skips reporting. */
  getStringDetails(name: string, defaultValue: string, options?: { report?: boolean }): EvaluationDetails<string>;
  /** Call `listener` whenever values or status change; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void;
  /** Ask the endpoint again (ETag-aware). Resolves when done; never rejects. */
  refresh(): Promise<void>;
  /** Send one evaluation to the extension (bindings use this to report from effects). */
  report(details: EvaluationDetails<FlagValue>): void;
  /** A number that changes whenever values or status change (for `useSyncExternalStore`). */
  readonly version: number;
  /** `loading`, `ready` or `error`. */
  readonly status: ClientStatus;
  /**
   * Drop listeners, stop listening for the extension and ignore answers still in flight.
   * A later {@link refresh} opens the client again (React StrictMode remounts do this).
   */
  close(): void;
}

function defaultEndpoint(): string | null {
  const origin = typeof location === "undefined" ? undefined : location.origin;
  return origin && origin !== "null" ? origin + OFREP_PATH : null;
}

/**
 * Create a client that reads the request's overrides from the app's OFREP endpoint.
 *
 * @example
 * import { createClient } from "@featureflag/sdk";
 * const client = createClient({ endpoint: "/ofrep/v1/evaluate/flags" });
 * client.subscribe(() => render(client.getString("lp-variant", "a")));
 * await client.refresh();
 */
export function createClient(options: ClientOptions = {}): FeatureFlagClient {
  let overrides = new Map<string, FlagValue>(Object.entries(options.initial ?? {}));
  let status: ClientStatus = "loading";
  let version = 0;
  let etag: string | null = null;
  let inflight: Promise<void> | null = null;
  let warned = false;
  let closed = false;
  const listeners = new Set<() => void>();
  const reporter: Reporter | null =
    options.report !== false && typeof window !== "undefined" ? createReporter(window) : null;

  const warnOnce = (message: string): void => {
    if (warned) return;
    warned = true;
    (options.warn ?? console.warn)(`featureflag: ${message}`);
  };
  const changed = (): void => {
    version += 1;
    for (const listener of [...listeners]) listener();
  };
  const report = (details: EvaluationDetails<FlagValue>): void => {
    const evaluation: Evaluation = { name: details.flagKey, value: details.value, source: details.source };
    if (details.errorMessage !== undefined) evaluation.rejected = details.errorMessage;
    reporter?.add(evaluation);
  };
  const evaluate = <T extends FlagValue>(name: string, fallback: T, opts?: { report?: boolean }) => {
    const details = resolve(overrides, name, fallback);
    if (opts?.report !== false) report(details);
    return details;
  };

  const load = async (): Promise<void> => {
    const endpoint = options.endpoint ?? defaultEndpoint();
    const fetchImpl = options.fetch ?? (typeof fetch === "function" ? fetch.bind(globalThis) : undefined);
    const result =
      endpoint === null || fetchImpl === undefined
        ? { kind: "failed" as const, problem: "no endpoint or no fetch (pass `endpoint` and `fetch` outside a browser)" }
        : await fetchFlags({
            endpoint,
            fetch: fetchImpl,
            headers: options.headers ?? {},
            credentials: options.credentials ?? "same-origin",
            context: options.context ?? {},
            timeoutMs: options.timeoutMs ?? 10_000,
            etag,
          });
    if (closed) return;
    if (result.kind === "failed") {
      warnOnce(`could not load flags from ${endpoint ?? OFREP_PATH}: ${result.problem}; using defaults`);
      if (status !== "error") {
        status = "error";
        changed();
      }
      return;
    }
    const before = status;
    status = "ready";
    if (result.kind === "flags") {
      etag = result.etag;
      const same =
        result.flags.size === overrides.size &&
        [...result.flags].every(([name, value]) => overrides.get(name) === value);
      overrides = result.flags;
      if (!same || before !== "ready") changed();
    } else if (before !== "ready") {
      changed();
    }
  };

  // Plain-JS callers can pass anything; the types promise a boolean or a string back.
  const bool = (value: unknown): boolean => (typeof value === "boolean" ? value : Boolean(value));
  const str = (value: unknown): string => (typeof value === "string" ? value : String(value ?? ""));

  return {
    getBool: (name, defaultValue = false) => evaluate(name, bool(defaultValue)).value,
    getString: (name, defaultValue) => evaluate(name, str(defaultValue)).value,
    getBoolDetails: (name, defaultValue = false, opts) => evaluate(name, bool(defaultValue), opts),
    getStringDetails: (name, defaultValue, opts) => evaluate(name, str(defaultValue), opts),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    refresh() {
      closed = false;
      inflight ??= load().finally(() => {
        inflight = null;
      });
      return inflight;
    },
    report,
    get version() {
      return version;
    },
    get status() {
      return status;
    },
    close() {
      closed = true;
      listeners.clear();
      reporter?.close();
    },
  };
}
