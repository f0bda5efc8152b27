import type { Evaluation, EvaluationsMessage } from "./types";

/** What the extension's content script may post to ask for everything reported so far. */
const HELLO = { source: "featureflag-extension", type: "hello" } as const;

/** Batches evaluations and posts them to the page's own window (contract 6). */
export interface Reporter {
  add(evaluation: Evaluation): void;
  close(): void;
}

const same = (a: Evaluation | undefined, b: Evaluation): boolean =>
  a !== undefined && a.value === b.value && a.source === b.source && a.rejected === b.rejected;

/**
 * Create a reporter posting to `win` with `targetOrigin` = `win.location.origin`.
 * Evaluations made in one task are sent in one message, one entry per flag (the last one
 * wins); a flag whose value, source and rejection did not change since it was last sent is
 * not sent again. The extension can post `{source: "featureflag-extension", type: "hello"}`
 * to the page to get every flag reported so far (useful when it starts after the app).
 */
export function createReporter(win: Window): Reporter {
  const pending = new Map<string, Evaluation>();
  const sent = new Map<string, Evaluation>();
  let scheduled = false;

  const post = (evaluations: Evaluation[]): void => {
    const origin = win.location.origin;
    if (evaluations.length === 0 || !origin || origin === "null") return;
    const message: EvaluationsMessage = { source: "featureflag-sdk", type: "evaluations", evaluations };
    try {
      win.postMessage(message, origin);
    } catch {
      // A page without a usable origin (sandboxed iframe): nothing to report to.
    }
  };
  const flush = (): void => {
    scheduled = false;
    const batch: Evaluation[] = [];
    for (const [name, evaluation] of pending) {
      if (same(sent.get(name), evaluation)) continue;
      sent.set(name, evaluation);
      batch.push(evaluation);
    }
    pending.clear();
    post(batch);
  };
  const onMessage = (event: MessageEvent): void => {
    const data = event.data as { source?: unknown; type?: unknown } | null;
    // The answer only ever goes to the page's own origin, so anyone may ask.
    if (data?.source !== HELLO.source || data.type !== HELLO.type) return;
    post([...sent.values()]);
  };
  let listening = false;

  return {
    add(evaluation) {
      if (!listening) {
        listening = true;
        win.addEventListener("message", onMessage);
      }
      pending.set(evaluation.name, evaluation);
      if (!scheduled) {
        scheduled = true;
        queueMicrotask(flush);
      }
    },
    close() {
      listening = false;
      win.removeEventListener("message", onMessage);
      pending.clear();
    },
  };
}
