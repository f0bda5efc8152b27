/**
 * The service worker: reads the `Feature-Flags` / `Feature-Flag-Override-Error` headers
 * of every tab's responses, takes the front end's evaluations from the content script,
 * keeps one state per tab in `chrome.storage.session` and keeps the badge current.
 *
 * MV3 kills this worker when idle, so nothing lives in memory but a write queue.
 */
import { protectApiToken } from "./apitoken";
import type { FrontEndMessage } from "./frontend";
import { parseFrontEndEvaluations } from "./frontend";
import { type Applied, badgeFor, overrideStatus, siteOf } from "./overrides";
import { parseRefusal, parseReport, type Report } from "./report";
import { extraSites } from "./sites";
import {
  addFrontEnd,
  addResponse,
  navigated,
  overrideCount,
  rejectedOverrides,
  type RestoredMessage,
  remember,
  restored,
  type TabState,
} from "./state";
import { appliedKey, historyKey, parseStorageKey, tabKey } from "./storage";

// Keep the API token from content scripts, which run inside web pages and never need
// it: local storage locked to the extension (Chrome 140+), else the token moves to
// session storage (apitoken.ts). Never a bare setAccessLevel call: before Chrome 140 it
// is missing on local storage, and a throw here would stop the worker from starting.
void protectApiToken(chrome.storage).catch((error: unknown) => console.error("featureflag: api token", error));

const REPORT_HEADER = "feature-flags";
const REFUSAL_HEADER = "feature-flag-override-error";

// One promise chain per tab, so concurrent responses don't overwrite each other's writes.
const queues = new Map<number, Promise<void>>();

function queued(tabId: number, work: () => Promise<void>): Promise<void> {
  const previous = queues.get(tabId) ?? Promise.resolve();
  const settled = previous.then(work).catch((error: unknown) => console.error("featureflag: tab state", error));
  queues.set(tabId, settled);
  return settled;
}

function update(tabId: number, change: (state: TabState | null) => TabState | null): Promise<void> {
  return queued(tabId, async () => {
    const key = tabKey(tabId);
    const stored = (await chrome.storage.session.get(key))[key] as TabState | undefined;
    const state = change(stored ?? null);
    if (state === null) return;
    if (state !== stored) await chrome.storage.session.set({ [key]: state });
    await refreshBadge(tabId, state);
  });
}

/**
 * The tab moves to another page: `next` (from the page's state and the tab's earlier
 * pages) replaces the tab's state, and the pages it left are stored with it.
 */
function move(
  tabId: number,
  next: (current: TabState | null, history: TabState[]) => { state: TabState; history: TabState[] },
): Promise<void> {
  return queued(tabId, async () => {
    const [key, earlier] = [tabKey(tabId), historyKey(tabId)];
    const stored = await chrome.storage.session.get([key, earlier]);
    const current = (stored[key] as TabState | undefined) ?? null;
    const { state, history } = next(current, (stored[earlier] as TabState[] | undefined) ?? []);
    await chrome.storage.session.set({ [key]: state, [earlier]: history });
    await refreshBadge(tabId, state);
  });
}

async function refreshBadge(tabId: number, state: TabState): Promise<void> {
  const origin = siteOf(state.url);
  let applied: Applied | null = null;
  if (origin) {
    const key = appliedKey(origin);
    applied = ((await chrome.storage.local.get(key))[key] as Applied | undefined) ?? null;
  }
  const status = overrideStatus(
    applied,
    state.refusal?.reason ?? null,
    overrideCount(state),
    Date.now(),
    rejectedOverrides(state),
  );
  const badge = badgeFor(status);
  try {
    await chrome.action.setBadgeText({ tabId, text: badge.text });
    await chrome.action.setBadgeBackgroundColor({ tabId, color: badge.color });
    await chrome.action.setTitle({ tabId, title: badge.title });
  } catch {
    // the tab closed meanwhile
  }
}

function header(headers: chrome.webRequest.HttpHeader[] | undefined, name: string): string | null {
  const values = (headers ?? [])
    .filter((h) => h.name.toLowerCase() === name && h.value !== undefined)
    .map((h) => h.value as string);
  // Several fields of one name form one list (RFC 9110 §5.3).
  return values.length ? values.join(", ") : null;
}

chrome.webRequest.onHeadersReceived.addListener(
  (details) => {
    if (details.tabId < 0) return undefined; // service workers, the extension itself
    // A prerendered page is not (yet) what the tab shows: it must not reset the tab.
    if (details.documentLifecycle === "prerender") return undefined;
    const raw = header(details.responseHeaders, REPORT_HEADER);
    const report: Report | null = raw === null ? null : parseReport(raw);
    const refusalRaw = header(details.responseHeaders, REFUSAL_HEADER);
    const refusal = refusalRaw === null ? null : parseRefusal(refusalRaw);
    const response = { url: details.url, report, refusal };
    if (details.type === "main_frame") {
      void move(details.tabId, (current, history) => ({
        state: addResponse(navigated(details.url), response),
        history: remember(history, current),
      }));
    } else if (report || refusal) {
      void update(details.tabId, (state) => addResponse(state ?? navigated(details.url), response));
    }
    return undefined;
  },
  { urls: ["<all_urls>"], types: ["main_frame", "sub_frame", "xmlhttprequest"] },
  ["responseHeaders", "extraHeaders"],
);

chrome.runtime.onMessage.addListener((message: unknown, sender, sendResponse) => {
  const msg = message as Partial<FrontEndMessage | RestoredMessage> | null;
  // Only our own content script talks to us (no externally_connectable in the manifest).
  if (sender.id !== chrome.runtime.id) return false;
  const tabId = sender.tab?.id;
  if (tabId === undefined || tabId < 0) return false;
  if (msg?.kind === "featureflag/restored") {
    // The top-level page came back from the back/forward cache: no request, no report.
    // sender.url is the browser's word for where the page is, not the page's.
    const url = sender.url;
    if (sender.frameId !== 0 || url === undefined) return false;
    void move(tabId, (current, history) => restored(history, current, url)).then(() => sendResponse({ ok: true }));
    return true;
  }
  if (msg?.kind !== "featureflag/frontend") return false;
  const evaluations = parseFrontEndEvaluations(msg); // validate again: never trust a page
  void update(tabId, (state) => addFrontEnd(state ?? navigated(sender.tab?.url ?? sender.url ?? ""), evaluations)).then(
    () => sendResponse({ ok: true }),
  );
  return true;
});

// Chrome clears a tab's badge when a navigation commits, which is after the response
// headers arrived: set it again once the tab reports progress.
chrome.tabs.onUpdated.addListener((tabId, changeInfo) => {
  if (changeInfo.status) void update(tabId, (state) => state);
});

chrome.tabs.onRemoved.addListener((tabId) => {
  queues.delete(tabId);
  void chrome.storage.session.remove([tabKey(tabId), historyKey(tabId)]);
});

// Applying or clearing overrides changes the badge of every tab on that site.
chrome.storage.onChanged.addListener((changes, area) => {
  if (area !== "local" || !Object.keys(changes).some((k) => parseStorageKey(k)?.kind === "applied")) return;
  void chrome.storage.session.get(null).then((all) => {
    for (const [key, value] of Object.entries(all)) {
      const parsed = parseStorageKey(key);
      if (parsed?.kind === "tab") void refreshBadge(parsed.tabId, value as TabState);
    }
  });
});

// Sites the user granted at run time get the content script too (the manifest's
// content_scripts only cover the built-in localhost sites).
const DYNAMIC_SCRIPT = "featureflag-granted-sites";

async function syncContentScripts(): Promise<void> {
  const { origins = [] } = await chrome.permissions.getAll();
  const matches = extraSites(origins);
  const existing = await chrome.scripting.getRegisteredContentScripts({ ids: [DYNAMIC_SCRIPT] });
  if (existing.length) await chrome.scripting.unregisterContentScripts({ ids: [DYNAMIC_SCRIPT] });
  if (matches.length === 0) return;
  await chrome.scripting.registerContentScripts([
    { id: DYNAMIC_SCRIPT, matches, js: ["content.js"], runAt: "document_start", allFrames: true },
  ]);
}

const sync = (): void => void syncContentScripts().catch((e: unknown) => console.error("featureflag: sites", e));
chrome.permissions.onAdded.addListener(sync);
chrome.permissions.onRemoved.addListener(sync);
chrome.runtime.onInstalled.addListener(sync);
