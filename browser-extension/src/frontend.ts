/**
 * The front end's report (contract 6): the page's JS SDK posts
 * `{source: "featureflag-sdk", type: "evaluations", evaluations: [...]}` to its own window;
 * the content script checks where the message came from and what it holds before
 * relaying it to the service worker.
 */
import type { Evaluation } from "./report";

/** The `source` field that marks the JS SDK's messages. */
export const SDK_SOURCE = "featureflag-sdk";

/** The message the content script sends to the service worker. */
export interface FrontEndMessage {
  kind: "featureflag/frontend";
  evaluations: Evaluation[];
}

/** At most this many evaluations are taken from one message (the app's own cap is 500). */
export const MAX_EVALUATIONS = 500;
const MAX_NAME = 200;
const MAX_VALUE = 1000;

/** Is this `message` event one we should relay? Only the page's own window, own origin. */
export function isSdkEvent(
  event: { source: unknown; origin: string; data: unknown },
  win: { location: { origin: string } },
): boolean {
  if (event.source !== win || event.origin !== win.location.origin) return false;
  const data = event.data;
  return (
    typeof data === "object" &&
    data !== null &&
    (data as { source?: unknown }).source === SDK_SOURCE &&
    (data as { type?: unknown }).type === "evaluations"
  );
}

/** Validate the posted evaluations; entries that break the contract are dropped. */
export function parseFrontEndEvaluations(data: unknown): Evaluation[] {
  const raw = (data as { evaluations?: unknown } | null)?.evaluations;
  if (!Array.isArray(raw)) return [];
  const out: Evaluation[] = [];
  for (const item of raw.slice(0, MAX_EVALUATIONS)) {
    if (typeof item !== "object" || item === null) continue;
    const { name, value, source, rejected } = item as Record<string, unknown>;
    if (typeof name !== "string" || name === "" || name.length > MAX_NAME) continue;
    if (typeof value !== "boolean" && typeof value !== "string") continue;
    if (typeof value === "string" && value.length > MAX_VALUE) continue;
    if (source !== "default" && source !== "override") continue;
    out.push({
      name,
      value,
      source,
      rejected: typeof rejected === "string" && rejected !== "" ? rejected.slice(0, 200) : null,
      where: { kind: "frontend" },
    });
  }
  return out;
}
