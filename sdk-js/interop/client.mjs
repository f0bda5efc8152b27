// Our framework-free client (the built package, imported by its own name) against a real
// app: values, details, ETag/304 on a second refresh, and a React server render.
import { createClient } from "@featureflag/sdk";
import { FeatureFlagProvider, useBoolFlag, useStringFlag } from "@featureflag/sdk/react";
import { createElement as h } from "react";
import { renderToString } from "react-dom/server";
import { FLAGS, parseArgs, recordingFetch } from "./shared.mjs";

const { base, token, via } = parseArgs();
const { fetch, statuses } = recordingFetch(token, via);
const warnings = [];
const client = createClient({
  endpoint: `${base}/ofrep/v1/evaluate/flags`,
  fetch,
  warn: (message) => warnings.push(message),
});
await client.refresh();

const read = (flag) =>
  flag.type === "bool" ? client.getBoolDetails(flag.name, flag.default) : client.getStringDetails(flag.name, flag.default);
const values = Object.fromEntries(FLAGS.map((flag) => [flag.name, read(flag).value]));
const details = Object.fromEntries(FLAGS.map((flag) => [flag.name, read(flag)]));

await client.refresh(); // the same answer again: If-None-Match -> 304, values kept
const afterRevalidation = Object.fromEntries(FLAGS.map((flag) => [flag.name, read(flag).value]));

function Page() {
  const checkout = useBoolFlag("new-checkout");
  const variant = useStringFlag("lp-variant", "a");
  const typed = useBoolFlag("typed");
  return h("p", null, `new-checkout=${checkout} lp-variant=${variant} typed=${typed}`);
}
const html = renderToString(h(FeatureFlagProvider, { client }, h(Page)));

console.log(JSON.stringify({ status: client.status, values, details, afterRevalidation, statuses, html, warnings }));
