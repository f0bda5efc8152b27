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
