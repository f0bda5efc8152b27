/**
 * The options page: the override service URL, the API token, the token lifetime, and a
 * "test connection" button (`GET /healthz`, then an authenticated call).
 */
import {
  type Config,
  normalizeServiceUrl,
  readConfig,
  serviceOriginPattern,
} from "./config";
import { testConnection } from "./overrides";
import { CONFIG_KEY } from "./storage";

const input = (id: string): HTMLInputElement => document.getElementById(id) as HTMLInputElement;
const result = document.getElementById("result") as HTMLElement;

function show(kind: "info" | "error", text: string): void {
  const box = document.createElement("div");
  box.className = `notice ${kind}`;
  box.dataset.kind = kind;
  box.textContent = text;
  result.replaceChildren(box);
}

/** Read the form; throws with a message that says what to fix. */
function formConfig(): Config {
  const url = input("service-url").value.trim();
  const ttl = Number(input("ttl").value);
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

async function save(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  try {
    const config = formConfig();
    await ensureAccess(config.serviceUrl);
    await chrome.storage.local.set({ [CONFIG_KEY]: config });
    input("service-url").value = config.serviceUrl;
    show("info", "Saved.");
  } catch (error) {
    show("error", error instanceof Error ? error.message : String(error));
  }
}

async function test(): Promise<void> {
  try {
    const config = formConfig();
    if (!config.serviceUrl) throw new Error("Enter the override service URL first");
    await ensureAccess(config.serviceUrl);
    show("info", "Testing…");
    show("info", await testConnection(config));
  } catch (error) {
    show("error", error instanceof Error ? error.message : String(error));
  }
}

async function main(): Promise<void> {
  const config = readConfig((await chrome.storage.local.get(CONFIG_KEY))[CONFIG_KEY]);
  input("service-url").value = config.serviceUrl;
  input("api-token").value = config.apiToken;
  input("ttl").value = String(config.ttlMinutes);
  (document.getElementById("form") as HTMLFormElement).addEventListener("submit", (e) => void save(e));
  (document.getElementById("test") as HTMLButtonElement).addEventListener("click", () => void test());
}

void main();
