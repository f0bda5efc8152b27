import { defineConfig } from "tsup";

export default defineConfig([
  {
    // The npm package: `.` and `./react`, ESM + CJS + .d.ts.
    entry: { index: "src/index.ts", react: "src/react/index.ts" },
    format: ["esm", "cjs"],
    dts: true,
    sourcemap: true,
    target: "es2020",
    external: ["react"],
  },
  {
    // A <script> bundle for pages without a bundler: window.FeatureFlag.createClient(...).
    entry: { featureflag: "src/index.ts" },
    format: ["iife"],
    globalName: "FeatureFlag",
    outExtension: () => ({ js: ".iife.js" }),
    minify: true,
    sourcemap: true,
    target: "es2018",
  },
]);
