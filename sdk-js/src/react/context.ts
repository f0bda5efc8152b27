import { createContext } from "react";
import type { FeatureFlagClient } from "../client";

/** The client the nearest {@link FeatureFlagProvider} hands down (null outside one). */
export const ClientContext = createContext<FeatureFlagClient | null>(null);
