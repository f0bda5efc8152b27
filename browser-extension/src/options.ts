/**
 * The options page: the override service URL, the API token, the token lifetime, and a
 * "test connection" button (`GET /healthz`, then an authenticated call).
 *
 * Before the API token goes to a plain `http://` service that is not on this machine,
 * the page warns and waits for a second, explicit click ("Save anyway", "Send anyway").
 *
 * A pasted `name:token` (an entry of the service's FEATUREFLAG_API_TOKENS, maybe scoped:
 * `name:token:read+forks`) is refused with a message saying to paste only the token, and
 * a button that keeps only that part. Refused, not stripped silently: the service allows a
 * colon inside a token, so the page cannot be sure; a second button keeps it as typed.
 */
import { loadConfig, saveConfig } from "./apitoken";
import {
  type Config,
  DEFAULT_TTL_MINUTES,
  normalizeServiceUrl,
  pastedTokenEntry,
  plainHttpWarning,
  serviceOriginPattern,
} from "./config";
import { testConnection } from "./service";

const input = (id: string): HTMLInputElement => document.getElementById(id) as HTMLInputElement;
const result = document.getElementById("result") as HTMLElement;

function show(kind: "info" | "warn" | "error", text: string, ...actions: HTMLElement[]): void {
  const box = document.createElement("div");
  box.className = `notice ${kind}`;
  box.dataset.kind = kind;
  box.textContent = text;
  for (const action of actions) box.append(" ", action);
  result.replaceChildren(box);
}

/** The service URL and token the user said may travel over plain HTTP (one pair). */
let acceptedPlainHttp: string | null = null;

/**
 * True when `config`'s token may be sent: https, loopback, no token, or the user already
 * clicked "anyway" for this URL and token. Otherwise shows the warning with a button that
 * runs `retry` once accepted, and returns false.
 */
function plainHttpAccepted(config: Config, verb: string, retry: () => Promise<void>): boolean {
  const warning = plainHttpWarning(config.serviceUrl, config.apiToken);
  const pair = `${config.serviceUrl} ${config.apiToken}`;
  if (warning === null || acceptedPlainHttp === pair) return true;
  const anyway = document.createElement("button");
  anyway.type = "button";
  anyway.id = "plain-http-anyway";
  anyway.textContent = `${verb} anyway`;
  anyway.addEventListener("click", () => {
    acceptedPlainHttp = pair;
    void retry();
  });
  show("warn", warning, anyway);
  return false;
}

function button(id: string, text: string, onClick: () => void): HTMLButtonElement {
  const node = document.createElement("button");
  node.type = "button";
  node.id = id;
  node.textContent = text;
  node.addEventListener("click", onClick);
  return node;
}

/** The API token the user said is a token as typed, colon and all (one value). */
let acceptedAsTyped: string | null = null;

/**
 * True unless `config`'s API token looks like a FEATUREFLAG_API_TOKENS entry. Otherwise
 * shows why, with a button that keeps only the token part (and, for one entry, one that
 * keeps the value as typed), each running `retry`, and returns false.
 */
function tokenAccepted(config: Config, retry: () => Promise<void>): boolean {
  const entry = pastedTokenEntry(config.apiToken);
  if (entry === null || acceptedAsTyped === config.apiToken) return true;
  const actions: HTMLElement[] = [];
  const { token } = entry;
  if (token !== null) {
    actions.push(
      button("token-part", "Keep only the token part", () => {
        input("api-token").value = token;
        void retry();
      }),
      button("token-as-typed", "It is my token: keep it as typed", () => {
        acceptedAsTyped = config.apiToken;
        void retry();
      }),
    );
  }
  show("error", entry.message, ...actions);
  input("api-token").focus();
  return false;
}

/** Read the form; throws with a message that says what to fix. */
function formConfig(): Config {
  const url = input("service-url").value.trim();
  const raw = input("ttl").value.trim();
  const ttl = raw === "" ? DEFAULT_TTL_MINUTES : Number(raw);
  if (!Number.isInteger(ttl) || ttl < 1) throw new Error("The token lifetime is a whole number of minutes, at least 1");
  return {
    serviceUrl: url ? normalizeServiceUrl(url) : "",
    apiToken: input("api-token").value.trim(),
    ttlMinutes: ttl,
  };
}

/**
 * Extension pages may call the service only with host access to it. localhost and
 * 127.0.0.1 are granted at install; any other service origin is asked for here, on
 * a click (Chrome only shows permission prompts on a user gesture).
 */
async function ensureAccess(serviceUrl: string): Promise<void> {
  if (!serviceUrl) return;
  const origins = [serviceOriginPattern(serviceUrl)];
  if (await chrome.permissions.contains({ origins })) return;
  if (!(await chrome.permissions.request({ origins }))) {
    throw new Error(`Without access to ${new URL(serviceUrl).origin} the extension cannot ask it for tokens`);
  }
}

async function save(): Promise<void> {
  try {
    const config = formConfig();
    if (!tokenAccepted(config, save) || !plainHttpAccepted(config, "Save", save)) return;
    await ensureAccess(config.serviceUrl);
    const home = await saveConfig(chrome.storage, config);
    input("service-url").value = config.serviceUrl;
    show(
      "info",
      home === "local" || !config.apiToken
        ? "Saved."
        : "Saved. This Chrome (before 140) cannot keep the API token from web pages' content " +
            "scripts in lasting storage, so it is kept only until the browser quits: enter it " +
            "again after a restart, or update Chrome.",
    );
  } catch (error) {
    show("error", error instanceof Error ? error.message : String(error));
  }
}

async function test(): Promise<void> {
  try {
    const config = formConfig();
    if (!config.serviceUrl) throw new Error("Enter the override service URL first");
    if (!tokenAccepted(config, test) || !plainHttpAccepted(config, "Send", test)) return;
    await ensureAccess(config.serviceUrl);
    show("info", "Testing…");
    const report = await testConnection(config);
    show(report.kind, report.text);
  } catch (error) {
    show("error", error instanceof Error ? error.message : String(error));
  }
}

async function main(): Promise<void> {
  (document.getElementById("form") as HTMLFormElement).addEventListener("submit", (e) => {
    e.preventDefault();
    void save();
  });
  (document.getElementById("test") as HTMLButtonElement).addEventListener("click", () => void test());
  const config = await loadConfig(chrome.storage);
  // Storage answers after the page is shown: keep what the user typed meanwhile.
  const fill = (id: string, value: string): void => {
    if (input(id).value === "") input(id).value = value;
  };
  fill("service-url", config.serviceUrl);
  fill("api-token", config.apiToken);
  fill("ttl", String(config.ttlMinutes));
}

void main();
