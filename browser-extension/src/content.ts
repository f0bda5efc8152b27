/**
 * Content script: relays the page's JS SDK evaluations (contract 6) to the service worker.
 * Only messages the page posted to itself, from its own origin, with the SDK's marker.
 */
import { type FrontEndMessage, isSdkEvent, parseFrontEndEvaluations } from "./frontend";

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
