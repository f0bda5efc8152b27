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
import {
  addRefusal,
  desiredOverrides,
  type Edits,
  isValidName,
  knownType,
  NAME_RULE,
  sameOverrides,
} from "./edits";
import { forkFormUrl, pageOverrides } from "./forklink";
import {
  type Applied,
  COOKIE_NAME,
  cookieDetails,
  mintToken,
  overrideStatus,
  siteOf,
} from "./overrides";
import { describeRefusal, type FlagValue } from "./report";
import { routeElement } from "./routes";
import { el, fitHeight, type RowContext, rowElement } from "./rows";
import { ServiceError } from "./service";
import { originPattern } from "./sites";
import { flagRows, navigated, overrideCount, rejectedOverrides, type TabState, tabRoutes } from "./state";
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
/** The last failed Apply; `inSettings` when the fix is in Options (URL or API token). */
let lastError: { text: string; inSettings: boolean } | null = null;
/** The service's catalog by name (empty until fetched, or without a service). */
let catalog = new Map<string, CatalogEntry>();
/** Why the catalog could not be read (string flags then show text fields), or null. */
let catalogProblem: string | null = null;
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

function optionsLink(text = "Open Options"): HTMLElement {
  return el("a", { href: "options.html", target: "_blank", textContent: text });
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
  tbody.querySelectorAll("textarea").forEach(fitHeight);
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
  if (lastError) notices.push(notice("error", lastError.text, ...(lastError.inSettings ? [optionsLink()] : [])));
  const rejected = rejectedOverrides(state);
  const status = overrideStatus(applied, state.refusal?.reason ?? null, overrideCount(state), now, rejected);
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
  } else if (status.kind === "rejected") {
    const which = status.flags.join(", ");
    notices.push(
      notice("warn", `The app rejected the override of ${which} and used the default: see the reason on the row.`),
    );
  }
  if (catalogProblem && missingSettings(config).length === 0) {
    const problem = notice("warn", catalogProblem);
    problem.id = "catalog-problem";
    notices.push(problem);
  }
  if (origin && !view.readable) {
    const enable = el("button", { textContent: "Enable on this site" });
    enable.addEventListener("click", () => void enableSite(origin));
    notices.push(notice("info", `The extension does not read ${origin} yet; enable it, then reload the page.`, enable));
  }
  const missing = missingSettings(config);
  if (missing.length) {
    notices.push(notice("info", `To override flags, set ${missing.join(" and ")} in `, optionsLink("Options")));
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
  $("legend").hidden = edits.size === 0;
  // "Save as fork…": the service's form, prefilled with the page's overrides.
  const fork = $<HTMLAnchorElement>("save-fork");
  fork.hidden = !config.serviceUrl || !origin;
  if (config.serviceUrl) {
    fork.href = forkFormUrl(config.serviceUrl, pageOverrides(flagRows(view.state), desired, edits));
  }
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
    lastError = {
      text: error instanceof Error ? error.message : String(error),
      inSettings: error instanceof ServiceError && error.inSettings,
    };
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

/** The values the page reported, by flag name. */
function reportedValues(): Map<string, FlagValue> {
  return new Map(view ? flagRows(view.state).map((row) => [row.name, row.value]) : []);
}

/** The known type of the flag named in "add a flag", from the page's report or the catalog. */
function addKnownType(name: string): ReturnType<typeof knownType> {
  return knownType(name, reportedValues(), catalog.get(name)?.type);
}

/** A name the page or the catalog knows picks its type (and the catalog's choices as a hint). */
function preselectType(): void {
  const name = $<HTMLInputElement>("add-name").value.trim();
  const known = addKnownType(name);
  const entry = catalog.get(name);
  $<HTMLInputElement>("add-value").placeholder = entry?.choices ? entry.choices.join(" / ") : "value";
  if (!known) return;
  const type = $<HTMLSelectElement>("add-type");
  if (known.type === "str") type.value = "string";
  else if (type.value === "string") {
    // A switch is usually added to flip it: preselect the other value.
    const current = reportedValues().get(name) ?? entry?.default;
    type.value = current === true ? "false" : "true";
  }
  showAddValue();
}

function addFlag(event: SubmitEvent): void {
  event.preventDefault();
  const name = $<HTMLInputElement>("add-name").value.trim();
  if (!isValidName(name)) {
    setStatus(`Cannot add "${name}": ${NAME_RULE}.`);
    return;
  }
  const type = $<HTMLSelectElement>("add-type").value;
  const value: FlagValue = type === "string" ? $<HTMLInputElement>("add-value").value : type === "true";
  const refusal = addRefusal(name, value, addKnownType(name));
  if (refusal) {
    setStatus(`Not added: ${refusal}.`);
    return;
  }
  edits.set(name, value);
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
  void fetchCatalog(view.config.serviceUrl, view.config.apiToken).then(({ entries, problem }) => {
    catalog = new Map(entries.map((e) => [e.name, e]));
    catalogProblem = problem;
    render();
  });
  $<HTMLFormElement>("add").addEventListener("submit", addFlag);
  $("add-type").addEventListener("change", showAddValue);
  $("add-name").addEventListener("input", preselectType);
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
