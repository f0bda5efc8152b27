/**
 * A flag's value: featureflag flags are booleans or strings, on both sides of the wire.
 *
 * @example
 * const initial: Record<string, FlagValue> = { "new-checkout": true, "lp-variant": "b" };
 */
export type FlagValue = boolean | string;

/**
 * Where a value came from: the caller's default, or an override the app's middleware
 * verified from the request's token (the same words as the Python SDK's report).
 *
 * @example
 * const fromServer = client.getBoolDetails("new-checkout").source === "override";
 */
export type Source = "default" | "override";

/**
 * OpenFeature's reason for a resolved value: `STATIC` (an override from the server),
 * `DEFAULT` (no override: the caller's default) or `ERROR` (an override that could not be
 * used, e.g. a string for a boolean flag; the default was returned).
 *
 * @example
 * if (client.getStringDetails("lp-variant", "a").reason === "ERROR") console.warn("bad override");
 */
export type Reason = "STATIC" | "DEFAULT" | "ERROR";

/**
 * What one evaluation produced, in OpenFeature's words ("evaluation details").
 *
 * @example
 * const details = client.getBoolDetails("new-checkout");
 * if (details.errorCode === "TYPE_MISMATCH") console.log(details.errorMessage);
 */
export interface EvaluationDetails<T extends FlagValue> {
  /** The flag's name. */
  flagKey: string;
  /** The value handed to the app: the override when it applies, otherwise the default. */
  value: T;
  /** `override` when the value came from the server, `default` otherwise. */
  source: Source;
  /** OpenFeature reason. */
  reason: Reason;
  /** `TYPE_MISMATCH` when an override of the wrong type was ignored. */
  errorCode?: "TYPE_MISMATCH";
  /** Why the override was ignored: names the flag and the fix. */
  errorMessage?: string;
}

/**
 * One entry of the message posted to the browser extension (see {@link EvaluationsMessage}).
 *
 * @example
 * const entry: Evaluation = { name: "lp-variant", value: "b", source: "override" };
 */
export interface Evaluation {
  name: string;
  value: FlagValue;
  source: Source;
  /** Present when an override was refused: why, and what to send instead. */
  rejected?: string;
}

/**
 * The `window.postMessage` payload the SDK sends to the featureflag browser extension,
 * always with `targetOrigin` set to the page's own origin.
 *
 * @example
 * window.addEventListener("message", (event) => {
 *   const data = event.data as EvaluationsMessage;
 *   if (event.source === window && data?.source === "featureflag-sdk") console.log(data.evaluations);
 * });
 */
export interface EvaluationsMessage {
  source: "featureflag-sdk";
  type: "evaluations";
  evaluations: Evaluation[];
}

/**
 * The client's state: `loading` until the first answer, `ready` after a good answer
 * (200 or 304), `error` after a network failure or a bad answer (values stay what they were).
 *
 * @example
 * if (client.status === "error") showBanner("flags unavailable, using defaults");
 */
export type ClientStatus = "loading" | "ready" | "error";
