/**
 * Test doubles for the vitest suites (never bundled: no entry point imports this).
 */
import { vi } from "vitest";
import type { Area } from "./apitoken";

/** What a fake area's `setAccessLevel` does: Chrome 140+ ("works"), or an older Chrome. */
export type Lock = "missing" | "rejects" | "throws" | "works";

/** An in-memory chrome.storage area; `lock` says what its setAccessLevel does. */
export function memoryArea(initial: Record<string, unknown> = {}, lock: Lock = "works"): Area & {
  data: Map<string, unknown>;
} {
  const data = new Map(Object.entries(structuredClone(initial)));
  const area: Area & { data: Map<string, unknown> } = {
    data,
    get: async (keys) => {
      const out: Record<string, unknown> = {};
      for (const key of typeof keys === "string" ? [keys] : keys) {
        if (data.has(key)) out[key] = structuredClone(data.get(key));
      }
      return out;
    },
    set: async (items) => {
      for (const [key, value] of Object.entries(items)) data.set(key, structuredClone(value));
    },
    remove: async (keys) => {
      for (const key of typeof keys === "string" ? [keys] : keys) data.delete(key);
    },
  };
  if (lock === "works") area.setAccessLevel = vi.fn(async () => {});
  if (lock === "rejects") area.setAccessLevel = vi.fn(async () => Promise.reject(new Error("only session")));
  if (lock === "throws")
    area.setAccessLevel = vi.fn(() => {
      throw new TypeError("Error in invocation of storage.setAccessLevel");
    });
  return area;
}

/** A fetch that records its calls and answers from a table keyed `"METHOD url"`; anything
 * else fails as when nothing answers ("Failed to fetch"). */
export function fakeFetch(answers: Record<string, () => Response>) {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const fn = async (url: string, init?: RequestInit): Promise<Response> => {
    calls.push({ url, init });
    const answer = answers[`${init?.method ?? "GET"} ${url}`];
    if (!answer) throw new TypeError("Failed to fetch");
    return answer();
  };
  return { fn, calls };
}

/** A JSON response with `status`. */
export const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
