import { describe, expect, it } from "vitest";
import { parseFrontEndEvaluations } from "./frontend";
import { parseReport } from "./report";
import {
  addFrontEnd,
  addResponse,
  flagRows,
  HISTORY_SIZE,
  navigated,
  overrideCount,
  rejectedOverrides,
  remember,
  restored,
  type TabState,
  tabRoutes,
} from "./state";

const page = "http://app.localhost:8000/";
const main = parseReport('"Home.is_new";value=?0;source=default, "hero";value="a";source=default');

describe("tab state", () => {
  it("starts empty on a navigation and takes the top-level report", () => {
    const state = addResponse(navigated(page), { url: page, report: main, refusal: null });
    expect(state.url).toBe(page);
    expect(state.reports).toBe(1);
    expect(flagRows(state).map((r) => [r.name, r.value, r.source])).toEqual([
      ["Home.is_new", false, "default"],
      ["hero", "a", "default"],
    ]);
  });

  it("adds sub-requests' reports and the downstream services they name", () => {
    let state = addResponse(navigated(page), { url: page, report: main, refusal: null });
    state = addResponse(state, {
      url: `${page}api/prices`,
      report: parseReport('"Prices.vat";value=?1;source=default;service="pricing", "late";value="x";source=default'),
      refusal: null,
    });
    const rows = flagRows(state);
    expect(rows.map((r) => r.name)).toEqual(["Home.is_new", "Prices.vat", "hero", "late"]);
    expect(rows.find((r) => r.name === "Prices.vat")?.where).toEqual([{ kind: "downstream", service: "pricing" }]);
    expect(state.reports).toBe(2);
  });

  it("lets a later report of the same flag from the same place replace the earlier one", () => {
    let state = addResponse(navigated(page), { url: page, report: main, refusal: null });
    state = addResponse(state, { url: `${page}x`, report: parseReport('"hero";value="b";source=override'), refusal: null });
    expect(state.evaluations).toHaveLength(2);
    const hero = flagRows(state).find((r) => r.name === "hero");
    expect(hero).toMatchObject({ value: "b", source: "override", differs: false });
  });

  it("merges the front end's evaluations into the server's rows, by name", () => {
    let state = addResponse(navigated(page), { url: page, report: main, refusal: null });
    state = addFrontEnd(
      state,
      parseFrontEndEvaluations({
        evaluations: [
          { name: "hero", value: "a", source: "default" },
          { name: "Banner.show", value: true, source: "default" },
        ],
      }),
    );
    const rows = flagRows(state);
    expect(rows.find((r) => r.name === "hero")?.where).toEqual([{ kind: "server" }, { kind: "frontend" }]);
    expect(rows.find((r) => r.name === "Banner.show")?.where).toEqual([{ kind: "frontend" }]);
  });

  it("flags a disagreement between places and marks the row overridden when any place was", () => {
    let state = addResponse(navigated(page), {
      url: page,
      report: parseReport('"hero";value="b";source=override'),
      refusal: null,
    });
    state = addFrontEnd(state, parseFrontEndEvaluations({ evaluations: [{ name: "hero", value: "a", source: "default" }] }));
    const [hero] = flagRows(state);
    expect(hero).toMatchObject({ source: "override", differs: true, value: "a" });
    expect(overrideCount(state)).toBe(1);
  });

  it("keeps the rejection reason of a refused override", () => {
    const state = addResponse(navigated(page), {
      url: page,
      report: parseReport('"Home.is_new";value=?0;source=default;rejected="declared -> bool, got the string \'on\'"'),
      refusal: null,
    });
    expect(flagRows(state)[0]?.rejected).toBe("declared -> bool, got the string 'on'");
  });

  it("lists the flags whose override the app rejected (the badge's '!')", () => {
    let state = addResponse(navigated(page), {
      url: page,
      report: parseReport('"promo-banner";value="Free";source=default;rejected="a string flag", "a";value=?1;source=override'),
      refusal: null,
    });
    expect(rejectedOverrides(state)).toEqual(["promo-banner"]);
    expect(overrideCount(state)).toBe(1);
    state = addFrontEnd(
      state,
      parseFrontEndEvaluations({ evaluations: [{ name: "chat", value: false, source: "default", rejected: "not a bool" }] }),
    );
    expect(rejectedOverrides(state)).toEqual(["chat", "promo-banner"]);
    expect(rejectedOverrides(navigated(page))).toEqual([]);
  });

  it("remembers a token refusal from any response until the next navigation", () => {
    let state = addResponse(navigated(page), { url: page, report: main, refusal: "bad-signature" });
    state = addResponse(state, { url: `${page}api`, report: null, refusal: null });
    expect(state.refusal).toEqual({ reason: "bad-signature", url: page });
    expect(navigated(page).refusal).toBeNull();
  });

  it("sums flags omitted by the byte budget", () => {
    let state = addResponse(navigated(page), { url: page, report: parseReport('"featureflag.truncated";omitted=3'), refusal: null });
    state = addResponse(state, { url: page, report: parseReport('"featureflag.truncated";omitted=2'), refusal: null });
    expect(state.omitted).toBe(5);
  });

  it("counts overridden flags once each, wherever they were evaluated", () => {
    let state = addResponse(navigated(page), {
      url: page,
      report: parseReport('"a";value=?1;source=override, "b";value="x";source=override, "c";value=?0;source=default'),
      refusal: null,
    });
    state = addFrontEnd(state, parseFrontEndEvaluations({ evaluations: [{ name: "a", value: true, source: "override" }] }));
    expect(overrideCount(state)).toBe(2);
  });

  it("does not change the state it was given (storage snapshots stay valid)", () => {
    const before = navigated(page);
    const snapshot = JSON.stringify(before);
    addResponse(before, { url: page, report: main, refusal: "expired" });
    addFrontEnd(before, parseFrontEndEvaluations({ evaluations: [{ name: "a", value: true, source: "default" }] }));
    expect(JSON.stringify(before)).toBe(snapshot);
  });

  it("survives a JSON round trip (chrome.storage.session stores JSON)", () => {
    const state = addResponse(navigated(page), { url: page, report: main, refusal: null });
    expect(flagRows(JSON.parse(JSON.stringify(state)))).toEqual(flagRows(state));
  });
});

describe("routes", () => {
  const followed = 'route;service="downstream";url="http://127.0.0.1:8003"';
  const refused = 'route;service="recommendations";url="http://evil.example";rejected="not allowed"';

  it("collects routes from the page and its sub-requests, beside the flags", () => {
    let state = addResponse(navigated(page), { url: page, report: parseReport(`"hero";value="a";source=default, ${followed}`), refusal: null });
    state = addResponse(state, { url: `${page}api/recs`, report: parseReport(refused), refusal: null });
    expect(tabRoutes(state)).toEqual([
      { service: "downstream", url: "http://127.0.0.1:8003", rejected: null },
      { service: "recommendations", url: "http://evil.example", rejected: "not allowed" },
    ]);
    expect(flagRows(state).map((r) => r.name)).toEqual(["hero"]);
    expect(overrideCount(state)).toBe(0);
  });

  it("keeps one line per (service, url): a later report replaces it, another url adds one", () => {
    let state = addResponse(navigated(page), { url: page, report: parseReport(followed), refusal: null });
    state = addResponse(state, { url: page, report: parseReport(`${followed};rejected="now refused"`), refusal: null });
    state = addResponse(state, { url: page, report: parseReport('route;service="downstream";url="http://127.0.0.1:9"'), refusal: null });
    expect(tabRoutes(state).map((r) => [r.url, r.rejected])).toEqual([
      ["http://127.0.0.1:8003", "now refused"],
      ["http://127.0.0.1:9", null],
    ]);
  });

  it("starts with no routes on a navigation, and reads states stored before routes existed", () => {
    expect(tabRoutes(navigated(page))).toEqual([]);
    const { routes: _, ...old } = addResponse(navigated(page), { url: page, report: main, refusal: null });
    const state = addResponse(old, { url: page, report: parseReport(followed), refusal: null });
    expect(tabRoutes(old)).toEqual([]);
    expect(tabRoutes(state)).toHaveLength(1);
  });

  it("remembers a page that reported only routes (back/forward cache)", () => {
    const routed = addResponse(navigated(page), { url: page, report: parseReport(followed), refusal: null });
    expect(remember([], { ...routed, reports: 0 })).toHaveLength(1);
  });
});

describe("pages a tab left (back/forward cache)", () => {
  const other = "http://app.localhost:8000/frontend";
  const home = addResponse(navigated(page), { url: page, report: main, refusal: null });
  const front = addFrontEnd(
    navigated(other),
    parseFrontEndEvaluations({ evaluations: [{ name: "frontend.chat", value: true, source: "default" }] }),
  );
  const names = (state: TabState): string[] => flagRows(state).map((r) => r.name);

  it("shows the flags of the page the tab went back to, and remembers the one it left", () => {
    const history = remember([], home); // the tab went from home to the front-end page
    const back = restored(history, front, `${page}#top`);
    expect(names(back.state)).toEqual(["Home.is_new", "hero"]);
    const forward = restored(back.history, back.state, other);
    expect(names(forward.state)).toEqual(["frontend.chat"]);
    expect(forward.history.map((s) => s.url)).toEqual([page]);
  });

  it("shows no rows, not the left page's, when it remembers nothing for that URL", () => {
    const back = restored([], front, "http://app.localhost:8000/elsewhere");
    expect(back.state).toEqual(navigated("http://app.localhost:8000/elsewhere"));
    expect(back.history).toEqual([front]);
  });

  it("keeps one entry per URL, the latest, and at most HISTORY_SIZE", () => {
    const reloaded = addResponse(navigated(page), { url: page, report: parseReport('"hero";value="b";source=override'), refusal: null });
    expect(remember(remember([], home), reloaded)).toEqual([reloaded]);
    let history: TabState[] = [];
    for (let i = 0; i < HISTORY_SIZE + 3; i++) {
      history = remember(history, addResponse(navigated(`${page}p${i}`), { url: `${page}p${i}`, report: main, refusal: null }));
    }
    expect(history.map((s) => s.url)).toEqual(
      Array.from({ length: HISTORY_SIZE }, (_, k) => `${page}p${k + 3}`),
    );
  });

  it("does not remember a page that reported nothing (a redirect, a page without flags)", () => {
    expect(remember([home], navigated(other))).toEqual([home]);
    expect(remember([home], null)).toEqual([home]);
  });
});
