// Helpers for the interop scripts: argument parsing and a fetch that carries the token
// the way a browser (cookie) or a proxy (header) would, recording each answer's status.

/** `node script.mjs <base-url> <token|-> <cookie|header>` */
export function parseArgs(argv = process.argv.slice(2)) {
  const [base, token, via = "cookie"] = argv;
  if (!base) throw new Error("usage: node <script>.mjs <base-url> <token|-> [cookie|header]");
  return { base, token: token && token !== "-" ? token : null, via };
}

/** The token as request headers: the override cookie, or the Feature-Flag-Overrides header. */
export function tokenHeaders(token, via) {
  if (token === null) return {};
  return via === "header" ? { "Feature-Flag-Overrides": token } : { Cookie: `featureflag_overrides=${token}` };
}

/** A fetch that adds the token headers and records every URL it asked and status it saw. */
export function recordingFetch(token, via, statuses = [], urls = []) {
  const extra = tokenHeaders(token, via);
  const wrapped = async (input, init = {}) => {
    const headers = new Headers(init.headers);
    for (const [name, value] of Object.entries(extra)) headers.set(name, value);
    urls.push(String(input));
    const response = await fetch(input, { ...init, headers });
    statuses.push(response.status);
    return response;
  };
  return { fetch: wrapped, statuses, urls };
}

/** The flags every script reads, with their defaults (same as tests/interop/app.py). */
export const FLAGS = [
  { name: "new-checkout", type: "bool", default: false },
  { name: "lp-variant", type: "string", default: "a" },
  { name: "typed", type: "bool", default: false },
  { name: "untouched", type: "bool", default: true },
];
