/**
 * `@featureflag/sdk`: read the request's featureflag overrides in the browser, from the
 * app's OFREP endpoint, and report every evaluation to the featureflag extension.
 * React bindings live on the `@featureflag/sdk/react` subpath.
 *
 * @packageDocumentation
 */
export { createClient, type ClientOptions, type FeatureFlagClient } from "./client";
export { OFREP_PATH, parseBulkResponse } from "./ofrep";
export type {
  ClientStatus,
  Evaluation,
  EvaluationDetails,
  EvaluationsMessage,
  FlagValue,
  Reason,
  Source,
} from "./types";
