/**
 * Which sites the extension reads. localhost, 127.0.0.1 and *.localhost are granted at
 * install (development and fork URLs); any other site is granted by the user, one origin
 * at a time, from the popup ("Enable on this site") or the options page.
 */

/** The host permissions in the manifest, granted at install. */
export const BUILT_IN_SITES = ["http://localhost/*", "http://127.0.0.1/*", "http://*.localhost/*"];

/** The permission pattern for one origin, e.g. `https://qa.example.com/*`. */
export function originPattern(origin: string): string {
  return `${origin}/*`;
}

/** The granted origins that need the content script registered at run time. */
export function extraSites(granted: readonly string[]): string[] {
  return granted.filter((pattern) => !BUILT_IN_SITES.includes(pattern)).sort();
}
