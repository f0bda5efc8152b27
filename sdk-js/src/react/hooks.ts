import { useContext, useEffect, useSyncExternalStore } from "react";
import type { FeatureFlagClient } from "../client";
import type { EvaluationDetails, FlagValue } from "../types";
import { ClientContext } from "./context";

let warnedOutside = false;
const noSubscribe = () => () => {};

function useDetails<T extends FlagValue>(name: string, defaultValue: T): EvaluationDetails<T> {
  const client = useContext(ClientContext);
  const getVersion = () => client?.version ?? 0;
  useSyncExternalStore(client?.subscribe ?? noSubscribe, getVersion, getVersion);
  let details: EvaluationDetails<FlagValue>;
  if (client === null) {
    details = { flagKey: name, value: defaultValue, source: "default", reason: "DEFAULT" };
  } else if (typeof defaultValue === "boolean") {
    details = client.getBoolDetails(name, defaultValue, { report: false });
  } else {
    details = client.getStringDetails(name, defaultValue, { report: false });
  }
  const { value, source, errorMessage } = details;
  useEffect(() => {
    if (client !== null) {
      client.report(details);
    } else if (!warnedOutside) {
      warnedOutside = true;
      console.warn(`featureflag: flag ${JSON.stringify(name)} is read outside <FeatureFlagProvider>; using its default`);
    }
    // Report again only when what the app sees changes, not on every render.
  }, [client, name, value, source, errorMessage]);
  return details as EvaluationDetails<T>;
}

/**
 * The boolean value of flag `name`: the override when the request carries one, else
 * `defaultValue`. Always a boolean: a string override is ignored (and reported to the
 * extension as rejected, with the fix). Re-renders when the flags arrive.
 *
 * @example
 * function Checkout() {
 *   const enabled = useBoolFlag("some-awesome-new-feature"); // default false
 *   return enabled ? <NewCheckout /> : <OldCheckout />;
 * }
 */
export function useBoolFlag(name: string, defaultValue = false): boolean {
  return useDetails(name, typeof defaultValue === "boolean" ? defaultValue : Boolean(defaultValue)).value;
}

/**
 * The string value of flag `name`: the override when the request carries a string for
 * it, else `defaultValue` (a boolean override is ignored and reported as rejected).
 *
 * @example
 * function Landing() {
 *   const variant = useStringFlag("lp-variant", "a");
 *   return variant === "b" ? <LandingB /> : <LandingA />;
 * }
 */
export function useStringFlag(name: string, defaultValue: string): string {
  return useDetails(name, typeof defaultValue === "string" ? defaultValue : String(defaultValue ?? "")).value;
}

/**
 * Full OpenFeature-style details for flag `name` (value, source, reason, error).
 *
 * @example
 * const { value, errorMessage } = useFlagDetails("new-checkout", false);
 */
export function useFlagDetails<T extends FlagValue>(name: string, defaultValue: T): EvaluationDetails<T> {
  return useDetails(name, defaultValue);
}

/**
 * The client of the nearest provider (null outside one), e.g. to `refresh()` after
 * the overrides changed.
 *
 * @example
 * const client = useFeatureFlagClient();
 * <button onClick={() => client?.refresh()}>Reload flags</button>;
 */
export function useFeatureFlagClient(): FeatureFlagClient | null {
  return useContext(ClientContext);
}
