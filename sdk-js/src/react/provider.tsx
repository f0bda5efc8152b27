import { type ReactNode, useEffect, useState } from "react";
import { type ClientOptions, createClient, type FeatureFlagClient } from "../client";
import { ClientContext } from "./context";

/**
 * Props of {@link FeatureFlagProvider}: the {@link ClientOptions} (all optional in a
 * browser), or a `client` you created yourself.
 *
 * @example
 * const props: FeatureFlagProviderProps = { initial: { "new-checkout": true }, children: null };
 */
export interface FeatureFlagProviderProps extends ClientOptions {
  /** Use this client instead of creating one; the caller owns it (and calls `refresh`). */
  client?: FeatureFlagClient;
  children?: ReactNode;
}

/**
 * Makes flags available to the hooks below it. With no props it asks the page's own
 * origin (`/ofrep/v1/evaluate/flags`) once mounted; until then, and during server
 * rendering, hooks answer from `initial` or their defaults. Options are read once.
 *
 * @example
 * import { FeatureFlagProvider } from "@featureflag/sdk/react";
 *
 * root.render(
 *   <FeatureFlagProvider initial={window.__FLAGS__}>
 *     <App />
 *   </FeatureFlagProvider>,
 * );
 */
export function FeatureFlagProvider({ client, children, ...options }: FeatureFlagProviderProps): ReactNode {
  const [owned] = useState(() => client ?? createClient(options));
  useEffect(() => {
    if (owned === client) return undefined;
    void owned.refresh();
    return () => owned.close();
  }, [owned, client]);
  return <ClientContext.Provider value={owned}>{children}</ClientContext.Provider>;
}
