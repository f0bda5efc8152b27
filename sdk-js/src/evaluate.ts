import type { EvaluationDetails, FlagValue } from "./types";

function describe(value: FlagValue): string {
  return typeof value === "string" ? `the string ${JSON.stringify(value)}` : `the boolean ${value}`;
}

/**
 * Resolve `name` against the verified `overrides`, mirroring the Python SDK: an override
 * of the wrong type never reaches the app; the details say it was rejected and why.
 */
export function resolve<T extends FlagValue>(
  overrides: ReadonlyMap<string, FlagValue>,
  name: string,
  defaultValue: T,
): EvaluationDetails<T> {
  const override = overrides.get(name);
  if (override === undefined) {
    return { flagKey: name, value: defaultValue, source: "default", reason: "DEFAULT" };
  }
  if (typeof override === typeof defaultValue) {
    return { flagKey: name, value: override as T, source: "override", reason: "STATIC" };
  }
  const [how, fix] =
    typeof defaultValue === "boolean"
      ? ["read as a boolean (useBoolFlag/getBool)", "send true or false"]
      : ["read as a string (useStringFlag/getString)", "send a string"];
  return {
    flagKey: name,
    value: defaultValue,
    source: "default",
    reason: "ERROR",
    errorCode: "TYPE_MISMATCH",
    errorMessage: `Flag ${JSON.stringify(name)} is ${how} but the override is ${describe(override)}; ${fix}`,
  };
}
