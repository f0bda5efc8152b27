/**
 * Content script: relays the page's JS SDK evaluations (contract 6) to the service worker.
 * Only messages the page posted to itself, from its own origin, with the SDK's marker.
 * Also tells the worker when the top-level page comes back from the back/forward cache.
 */
import { type FrontEndMessage, isSdkEvent, parseFrontEndEvaluations } from "./frontend";
import type { RestoredMessage } from "./state";

window.addEventListener("message", (event: MessageEvent) => {
  if (!isSdkEvent(event, window)) return;
  const evaluations = parseFrontEndEvaluations(event.data);
  if (evaluations.length === 0) return;
  const message: FrontEndMessage = { kind: "featureflag/frontend", evaluations };
  chrome.runtime.sendMessage(message).catch(() => {
    // the extension was reloaded; this page's content script is orphaned
  });
});

// The JS SDK answers this with every flag it reported so far, in case some were posted
// before this script listened (it runs at document_start, so normally none were).
window.addEventListener("load", () => {
  window.postMessage({ source: "featureflag-extension", type: "hello" }, window.location.origin);
});

// Back or Forward may show the page again from Chrome's back/forward cache: no request,
// so no report. The worker remembered this page's flags when the tab left it.
window.addEventListener("pageshow", (event: PageTransitionEvent) => {
  if (!event.persisted || window !== window.top) return;
  const message: RestoredMessage = { kind: "featureflag/restored" };
  chrome.runtime.sendMessage(message).catch(() => {
    // the extension was reloaded; this page's content script is orphaned
  });
});
