/**
 * Per-tab state: what the tab's responses and front end reported since its last
 * navigation. Pure functions over plain JSON, so the MV3 service worker can keep the
 * state in `chrome.storage.session` (it is killed when idle) and tests need no browser.
 */
import { type Evaluation, type FlagValue, type Report, type Route, type Where, whereKey } from "./report";

/** What one tab reported since its last top-level navigation. */
export interface TabState {
  /** The top-level document's URL. */
  url: string;
  /** Evaluations, one per (where, name); a later report of the same pair replaces it. */
  evaluations: Evaluation[];
  /**
   * Routed services (followed or refused), one per (service, url); a later report of the
   * same pair replaces it. Optional: states stored before routes existed have none.
   */
  routes?: Route[];
  /** Flags the app left out of its report (byte budget), summed over responses. */
  omitted: number;
  /** The latest `Feature-Flag-Override-Error` seen since the navigation. */
  refusal: { reason: string; url: string } | null;
  /** How many responses carried a `Feature-Flags` header. */
  reports: number;
}

/** How many pages a tab left are remembered, for a return from the back/forward cache. */
export const HISTORY_SIZE = 5;

function withoutFragment(url: string): string {
  const at = url.indexOf("#");
  return at < 0 ? url : url.slice(0, at);
}

/**
 * `history` with `left` (the page a tab is leaving) as its most recent entry, at most
 * {@link HISTORY_SIZE} entries, one per URL. Chrome may keep the page in its
 * back/forward cache and show it again without a request: see {@link restored}.
 */
export function remember(history: readonly TabState[], left: TabState | null): TabState[] {
  if (left === null) return [...history];
  const url = withoutFragment(left.url);
  const kept = history.filter((s) => withoutFragment(s.url) !== url);
  // A page that reported nothing (a redirect, a page without flags) restores as empty anyway.
  const empty =
    left.evaluations.length === 0 && tabRoutes(left).length === 0 && left.refusal === null && left.reports === 0;
  return (empty ? kept : [...kept, left]).slice(-HISTORY_SIZE);
}

/** What the content script sends when the top-level page came back from the back/forward cache. */
export interface RestoredMessage {
  kind: "featureflag/restored";
}

/**
 * The tab showed `url` again from the back/forward cache (no request, so no report): its
 * state is the one remembered for that URL, or an empty one when none is (better no rows
 * than the rows of the page the user left). The page it left is remembered in turn.
 */
export function restored(
  history: readonly TabState[],
  current: TabState | null,
  url: string,
): { state: TabState; history: TabState[] } {
  const at = history.map((s) => withoutFragment(s.url)).lastIndexOf(withoutFragment(url));
  const state = at < 0 ? navigated(url) : (history[at] as TabState);
  const rest = history.filter((_, i) => i !== at);
  return { state, history: remember(rest, current) };
}

/** A fresh state for a top-level navigation to `url`. */
export function navigated(url: string): TabState {
  return { url, evaluations: [], routes: [], omitted: 0, refusal: null, reports: 0 };
}

/** The tab's routes, in the order first reported (none for a state stored before routes). */
export function tabRoutes(state: TabState): Route[] {
  return state.routes ?? [];
}

function mergeRoutes(routes: readonly Route[], incoming: readonly Route[]): Route[] {
  const key = (r: Route): string => `${r.service}\u0000${r.url ?? ""}`;
  const out = [...routes];
  const index = new Map(out.map((r, i) => [key(r), i]));
  for (const r of incoming) {
    const at = index.get(key(r));
    if (at === undefined) {
      index.set(key(r), out.length);
      out.push(r);
    } else {
      out[at] = r;
    }
  }
  return out;
}

function merge(evaluations: readonly Evaluation[], incoming: readonly Evaluation[]): Evaluation[] {
  const out = [...evaluations];
  const index = new Map(out.map((e, i) => [`${whereKey(e.where)}\u0000${e.name}`, i]));
  for (const e of incoming) {
    const key = `${whereKey(e.where)}\u0000${e.name}`;
    const at = index.get(key);
    if (at === undefined) {
      index.set(key, out.length);
      out.push(e);
    } else {
      out[at] = e;
    }
  }
  return out;
}

/** Fold one response (top-level or sub-request) into the state. */
export function addResponse(
  state: TabState,
  response: { url: string; report: Report | null; refusal: string | null },
): TabState {
  const next: TabState = { ...state };
  if (response.report) {
    next.evaluations = merge(state.evaluations, response.report.evaluations);
    next.routes = mergeRoutes(tabRoutes(state), response.report.routes);
    next.omitted = state.omitted + response.report.omitted;
    next.reports = state.reports + 1;
  }
  if (response.refusal) next.refusal = { reason: response.refusal, url: response.url };
  return next;
}

/** Fold the front end's evaluations into the state. */
export function addFrontEnd(state: TabState, evaluations: readonly Evaluation[]): TabState {
  return { ...state, evaluations: merge(state.evaluations, evaluations) };
}

/** One popup row: a flag and every place that evaluated it. */
export interface FlagRow {
  name: string;
  /** The value last reported (see `evaluations` when `differs`). */
  value: FlagValue;
  /** `override` when any place used an override. */
  source: "default" | "override";
  where: Where[];
  /** Why an override of this flag was refused, if one was. */
  rejected: string | null;
  /** True when places disagree on the value (e.g. the front end did not get the override). */
  differs: boolean;
  evaluations: Evaluation[];
}

/** Merge the server, downstream and front-end evaluations into one row per flag, by name. */
export function flagRows(state: TabState): FlagRow[] {
  const byName = new Map<string, Evaluation[]>();
  for (const e of state.evaluations) {
    const list = byName.get(e.name);
    if (list) list.push(e);
    else byName.set(e.name, [e]);
  }
  const rows: FlagRow[] = [];
  for (const [name, list] of byName) {
    const last = list[list.length - 1] as Evaluation;
    rows.push({
      name,
      value: last.value,
      source: list.some((e) => e.source === "override") ? "override" : "default",
      where: list.map((e) => e.where),
      rejected: list.find((e) => e.rejected !== null)?.rejected ?? null,
      differs: list.some((e) => e.value !== last.value),
      evaluations: list,
    });
  }
  return rows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** How many flags on the tab are currently overridden (what the badge shows). */
export function overrideCount(state: TabState): number {
  return flagRows(state).filter((row) => row.source === "override").length;
}

/**
 * The flags whose override the app rejected (its report marks them `rejected`, e.g. a
 * string flag given `true`): the page used the default instead. The badge shows `!`.
 */
export function rejectedOverrides(state: TabState): string[] {
  return flagRows(state)
    .filter((row) => row.rejected !== null)
    .map((row) => row.name);
}
