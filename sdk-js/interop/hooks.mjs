// Our React hooks in a DOM (jsdom) whose page lives on the app's origin: the provider gets
// no endpoint, so it must find /ofrep/v1/evaluate/flags on the page's own origin. Prints
// what the hooks rendered and what was posted to the extension (window.postMessage).
import { JSDOM } from "jsdom";
import { FLAGS, parseArgs, recordingFetch } from "./shared.mjs";

const { base, token, via } = parseArgs();
const dom = new JSDOM('<!doctype html><div id="root"></div>', { url: `${base}/frontend` });
const { window } = dom;
for (const name of ["window", "document", "location", "navigator"]) {
  Object.defineProperty(globalThis, name, { value: name === "window" ? window : window[name], configurable: true });
}
globalThis.IS_REACT_ACT_ENVIRONMENT = false;

const posted = [];
const originalPost = window.postMessage.bind(window);
window.postMessage = (message, targetOrigin) => {
  posted.push({ message, targetOrigin });
  return originalPost(message, targetOrigin);
};

// Imported after the globals exist, as a page's bundle would run after the DOM.
const { createElement: h } = await import("react");
const { createRoot } = await import("react-dom/client");
const { FeatureFlagProvider, useBoolFlag, useFeatureFlagClient, useStringFlag } = await import(
  "@featureflag/sdk/react"
);

const { fetch, statuses, urls } = recordingFetch(token, via);
const warnings = [];
let client = null;
function Page() {
  client = useFeatureFlagClient();
  const values = FLAGS.map((flag) =>
    // biome-ignore lint: the flag list is fixed, so hooks run in the same order every render.
    flag.type === "bool" ? useBoolFlag(flag.name, flag.default) : useStringFlag(flag.name, flag.default),
  );
  return h("p", { id: "flags" }, JSON.stringify(Object.fromEntries(FLAGS.map((f, i) => [f.name, values[i]]))));
}

const text = () => window.document.getElementById("flags")?.textContent ?? "";
const root = createRoot(window.document.getElementById("root"));
root.render(h(FeatureFlagProvider, { fetch, warn: (m) => warnings.push(m) }, h(Page)));
await new Promise((resolve) => setTimeout(resolve, 0));
const whileLoading = JSON.parse(text());

// Wait for the answer (bounded), then for React's commit and the reporter's batch.
for (let i = 0; i < 200 && (client === null || client.status === "loading"); i++) {
  await new Promise((resolve) => setTimeout(resolve, 25));
}
await new Promise((resolve) => setTimeout(resolve, 50));
const rendered = JSON.parse(text());
root.unmount();

// The latest report per flag, as the extension would keep it.
const reported = {};
for (const { message } of posted) {
  if (message?.source !== "featureflag-sdk") continue;
  for (const entry of message.evaluations) reported[entry.name] = entry;
}
console.log(
  JSON.stringify({
    status: client?.status ?? null,
    whileLoading,
    rendered,
    reported,
    targetOrigins: [...new Set(posted.map((p) => p.targetOrigin))],
    origin: window.location.origin,
    statuses,
    urls,
    warnings,
  }),
);
process.exit(0);
