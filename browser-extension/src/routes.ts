/**
 * The popup's "Routes" section: one line per routed service (docs/propagation.md), with
 * its URL and whether the app followed the route or refused it (and why).
 *
 * Every text here comes from a response header: it goes in as text nodes, never as HTML.
 */
import type { Route } from "./report";
import { el } from "./rows";

/** "followed", or "refused" when the app did not allow the route (it was never followed). */
export function routeStatus(route: Route): "followed" | "refused" {
  return route.rejected === null ? "followed" : "refused";
}

/** One line of the Routes list. */
export function routeElement(route: Route): HTMLLIElement {
  const status = routeStatus(route);
  const li = el(
    "li",
    { className: `route ${status}` },
    el("span", { className: "service" }, route.service),
    " → ",
    el("span", { className: "url" }, route.url ?? "(no URL)"),
    " ",
    el("span", { className: `chip ${status}` }, status),
  );
  li.dataset.service = route.service;
  li.dataset.status = status;
  if (route.rejected !== null) li.append(el("div", { className: "rejected" }, route.rejected));
  return li;
}
