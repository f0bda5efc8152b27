// The official OpenFeature web SDK with the OFREP web provider, pointed at the same app.
// It sends the token in a header (the provider's `headers` option), like a proxy would.
import { OFREPWebProvider } from "@openfeature/ofrep-web-provider";
import { OpenFeature } from "@openfeature/web-sdk";
import { FLAGS, parseArgs, tokenHeaders } from "./shared.mjs";

const { base, token, via } = parseArgs();
const provider = new OFREPWebProvider({
  baseUrl: base,
  headers: Object.entries(tokenHeaders(token, via)),
  cacheMode: "disabled", // no localStorage in Node
  changeDetection: "none",
  disableVisibilityRefresh: true,
});
await OpenFeature.setProviderAndWait(provider);
const client = OpenFeature.getClient();

const read = (flag) =>
  flag.type === "bool"
    ? client.getBooleanDetails(flag.name, flag.default)
    : client.getStringDetails(flag.name, flag.default);
const details = Object.fromEntries(
  FLAGS.map((flag) => {
    const { value, reason, errorCode, variant } = read(flag);
    return [flag.name, { value, reason, errorCode: errorCode ?? null, variant: variant ?? null }];
  }),
);
const values = Object.fromEntries(Object.entries(details).map(([name, d]) => [name, d.value]));
await OpenFeature.close();
console.log(JSON.stringify({ values, details }));
