/**
 * The popup: lists the flags the tab reported, lets the user edit them, and applies
 * overrides (token from the service → cookie on the tab's site → reload).
 *
 * The target tab is `?tab=N` when given (tests open the popup in a tab of its own),
 * else the active tab of the current window.
 */
import { type CatalogEntry, fetchCatalog } from "./catalog";
import { loadConfig } from "./apitoken";
import { type Config, missingSettings } from "./config";
import { desiredOverrides, type Edits, isValidName, NAME_RULE, sameOverrides } from "./edits";
import {
  type Applied,
  COOKIE_NAME,
  cookieDetails,
  mintToken,
  overrideStatus,
  siteOf,
} from "./overrides";
import { describeRefusal } from "./report";
import { routeElement } from "./routes";
import { el, type RowContext, rowElement } from "./rows";
import { originPattern } from "./sites";
import { flagRows, navigated, overrideCount, type TabState, tabRoutes } from "./state";
import { appliedKey, tabKey } from "./storage";

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;

interface View {
  tabId: number;
  url: string | null;
  origin: string | null;
  state: TabState;
  config: Config;
  applied: Applied | null;
  /** Whether the extension may read this site's responses (host permission). */
  readable: boolean;
}

const edits: Edits = new Map();
let view: View | null = null;
let busy = false;
let lastError: string | null = null;
/** The service's catalog by name (empty until fetched, or without a service). */
let catalog = new Map<string, CatalogEntry>();
/** What the table's rows read and call: the edits, the catalog, and how to re-render. */
const table: RowContext = {
  edits,
  catalog: (name) => catalog.get(name),
  changed: () => render(),
  typing: () => renderButtons(),
};

async function targetTab(): Promise<chrome.tabs.Tab | null> {
  const param = new URLSearchParams(location.search).get("tab");
  if (param !== null && /^\d+$/.test(param)) return chrome.tabs.get(Number(param));
  const [tab] = await chrome.tabs.query({ active: true, currentWindow: true });
  return tab ?? null;
}

async function load(tabId: number, url: string | null): Promise<View> {
  const origin = siteOf(url ?? undefined);
  const keys = origin ? [appliedKey(origin)] : [];
  const [local, session, config] = await Promise.all([
    chrome.storage.local.get(keys),
    chrome.storage.session.get(tabKey(tabId)),
    loadConfig(chrome.storage),
  ]);
  const state = (session[tabKey(tabId)] as TabState | undefined) ?? navigated(url ?? "");
  const applied = origin ? ((local[appliedKey(origin)] as Applied | undefined) ?? null) : null;
  const readable = origin ? await chrome.permissions.contains({ origins: [originPattern(origin)] }) : false;
  return { tabId, url, origin, state, config, applied, readable };
}

function notice(kind: "warn" | "error" | "info", text: string, ...actions: HTMLElement[]): HTMLElement {
  return el("div", { className: `notice ${kind}` }, text, ...actions);
}

function clearButton(): HTMLElement {
  const button = el("button", { textContent: "Clear the cookie" });
  button.addEventListener("click", () => void clear());
  return button;
}

function setStatus(text: string): void {
  $("status").textContent = text;
}

function render(): void {
  if (!view) return;
  const { state, config, applied, origin } = view;
  const now = Date.now();
  const desired = desiredOverrides(applied, edits, now);
  $("site").textContent = origin ?? "";

  // Rows: what the tab reported, plus flags added by name or applied but not reported.
  const rows = flagRows(state);
  const known = new Set(rows.map((r) => r.name));
  for (const [name, value] of Object.entries(desired)) {
    if (!known.has(name)) {
      rows.push({ name, value, source: "default", where: [], rejected: null, differs: false, evaluations: [] });
    }
  }
  $("catalog-names").replaceChildren(
    ...[...catalog.keys()].filter((n) => !known.has(n)).map((n) => el("option", { value: n })),
  );
  const tbody = $<HTMLTableElement>("flags").tBodies[0] as HTMLTableSectionElement;
  tbody.replaceChildren(...rows.map((row) => rowElement(row, desired, table)));
  $("flags").hidden = rows.length === 0;
  // Routes: which services the fork sent to another build, or asked to and was refused.
  const routes = tabRoutes(state);
  $("routes").querySelector("ul")?.replaceChildren(...routes.map(routeElement));
  $("routes").hidden = routes.length === 0;
  const empty = $("empty");
  empty.hidden = rows.length > 0 || routes.length > 0;
  empty.textContent = origin
    ? "No Feature-Flags header seen since this page loaded. Is the app using featureflag with report=\"always\", or carrying an override token? Reload the page after installing the extension."
    : view.url === null
      ? "The extension cannot see this tab's address: open the popup with the toolbar button while on the page."
      : "This tab is not a web page (http or https), so it has no flags.";
  const omitted = $("omitted");
  omitted.hidden = state.omitted === 0;
  omitted.textContent = `${state.omitted} more flag(s) were left out of the report by the app's header size budget.`;

  // Notices: refused or expired tokens (with a one-click re-apply), missing settings.
  const notices: HTMLElement[] = [];
  if (lastError) notices.push(notice("error", lastError));
  const status = overrideStatus(applied, state.refusal?.reason ?? null, overrideCount(state), now);
  const reapply = el("button", { id: "reapply", textContent: "Re-apply" });
  reapply.addEventListener("click", () => void apply(true));
  if (status.kind === "refused") {
    notices.push(
      notice(
        "warn",
        `The app refused the override token (${status.reason}): ${describeRefusal(status.reason)}.`,
        ...(applied ? [reapply] : [clearButton()]),
      ),
    );
  } else if (status.kind === "expired") {
    const at = new Date(status.applied.expiresAt).toLocaleString();
    notices.push(notice("warn", `Your overrides expired at ${at}.`, reapply));
  }
  if (origin && !view.readable) {
    const enable = el("button", { textContent: "Enable on this site" });
    enable.addEventListener("click", () => void enableSite(origin));
    notices.push(notice("info", `The extension does not read ${origin} yet; enable it, then reload the page.`, enable));
  }
  const missing = missingSettings(config);
  if (missing.length) {
    const link = el("a", { href: "options.html", target: "_blank", textContent: "Options" });
    notices.push(notice("info", `To override flags, set ${missing.join(" and ")} in `, link));
  }
  $("notices").replaceChildren(...notices);
  notices.forEach((n) => n.setAttribute("data-kind", n.className));

  renderButtons();
}

/** Apply is enabled when the edits change what is applied and the settings allow it. */
function renderButtons(): void {
  if (!view) return;
  const { applied, origin, config } = view;
  const now = Date.now();
  const desired = desiredOverrides(applied, edits, now);
  const changed = !sameOverrides(desired, desiredOverrides(applied, new Map(), now));
  const ready = missingSettings(config).length === 0;
  $<HTMLButtonElement>("apply").disabled = busy || !origin || !ready || !changed;
  $<HTMLButtonElement>("clear").disabled = busy || !origin;
}

async function apply(reapply = false): Promise<void> {
  if (!view?.origin) return;
  const { origin, config, applied, tabId } = view;
  const flags = reapply
    ? { ...(applied?.flags ?? {}), ...desiredOverrides(null, edits, Date.now()) }
    : desiredOverrides(applied, edits, Date.now());
  if (Object.keys(flags).length === 0) return clear();
  busy = true;
  lastError = null;
  render();
  setStatus("Asking the override service for a token…");
  try {
    const { token, expiresAt } = await mintToken(config, flags);
    await chrome.cookies.set(cookieDetails(origin, token, expiresAt));
    const record: Applied = { origin, flags, expiresAt, appliedAt: Date.now() };
    await chrome.storage.local.set({ [appliedKey(origin)]: record });
    edits.clear();
    setStatus(`Applied ${Object.keys(flags).length} override(s); reloading the page.`);
    await chrome.tabs.reload(tabId);
  } catch (error) {
    setStatus("");
    lastError = error instanceof Error ? error.message : String(error);
  } finally {
    busy = false;
    await refresh();
  }
}

async function clear(): Promise<void> {
  if (!view?.origin) return;
  const { origin, tabId } = view;
  busy = true;
  lastError = null;
  try {
    await chrome.cookies.remove({ url: `${origin}/`, name: COOKIE_NAME });
    await chrome.storage.local.remove(appliedKey(origin));
    edits.clear();
    setStatus("Overrides cleared; reloading the page.");
    await chrome.tabs.reload(tabId);
  } finally {
    busy = false;
    await refresh();
  }
}

/** Ask for access to the tab's site (a click is the user gesture Chrome requires). */
async function enableSite(origin: string): Promise<void> {
  if (!view) return;
  if (await chrome.permissions.request({ origins: [originPattern(origin)] })) {
    await chrome.tabs.reload(view.tabId);
    await refresh();
  }
}

async function refresh(): Promise<void> {
  if (!view) return;
  view = await load(view.tabId, view.url);
  render();
}

function showAddValue(): void {
  $("add-value").hidden = $<HTMLSelectElement>("add-type").value !== "string";
}

function addFlag(event: SubmitEvent): void {
  event.preventDefault();
  const name = $<HTMLInputElement>("add-name").value.trim();
  if (!isValidName(name)) {
    setStatus(`Cannot add "${name}": ${NAME_RULE}.`);
    return;
  }
  const type = $<HTMLSelectElement>("add-type").value;
  edits.set(name, type === "string" ? $<HTMLInputElement>("add-value").value : type === "true");
  $<HTMLInputElement>("add-name").value = "";
  $<HTMLInputElement>("add-value").value = "";
  setStatus("");
  render();
}

async function main(): Promise<void> {
  const tab = await targetTab().catch(() => null);
  if (tab?.id === undefined) {
    setStatus("No tab to show flags for: open the popup from the toolbar button on a page.");
    $("add").hidden = true;
    return;
  }
  view = await load(tab.id, tab.url ?? null);
  render();
  void fetchCatalog(view.config.serviceUrl, view.config.apiToken).then((entries) => {
    catalog = new Map(entries.map((e) => [e.name, e]));
    render();
  });
  $<HTMLFormElement>("add").addEventListener("submit", addFlag);
  $("add-type").addEventListener("change", showAddValue);
  // A name from the catalog picks its type (and its choices as a hint).
  $("add-name").addEventListener("input", () => {
    const entry = catalog.get($<HTMLInputElement>("add-name").value.trim());
    if (!entry?.type) return;
    const type = $<HTMLSelectElement>("add-type");
    if (entry.type === "str") type.value = "string";
    else if (type.value === "string") type.value = "true";
    $<HTMLInputElement>("add-value").placeholder = entry.choices ? entry.choices.join(" / ") : "value";
    showAddValue();
  });
  $("apply").addEventListener("click", () => void apply());
  $("clear").addEventListener("click", () => void clear());
  chrome.storage.onChanged.addListener((changes) => {
    void (async () => {
      if (!view) return;
      // The tab may have navigated elsewhere (a link, a redirect): follow its URL.
      const current = await chrome.tabs.get(view.tabId).catch(() => null);
      if (current?.url) view.url = current.url;
      // "Applied…, reloading" is stale once the reloaded page reported.
      if (!busy && changes[tabKey(view.tabId)]) setStatus("");
      await refresh();
    })();
  });
}

void main();
