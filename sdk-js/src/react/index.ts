/**
 * `@featureflag/sdk/react`: a provider and hooks over the framework-free client.
 *
 * @packageDocumentation
 */
export { FeatureFlagProvider, type FeatureFlagProviderProps } from "./provider";
export { useBoolFlag, useFeatureFlagClient, useFlagDetails, useStringFlag } from "./hooks";
export type { EvaluationDetails, FlagValue } from "../types";
