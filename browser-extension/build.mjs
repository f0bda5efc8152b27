// Bundle the extension into dist/ (the unpacked extension) with esbuild.
// Run by scripts/build-extension, which also makes the Chrome Web Store zip.
import { build } from "esbuild";
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";

const here = new URL(".", import.meta.url).pathname;
const dist = `${here}dist`;

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

await build({
  entryPoints: ["background", "content", "popup", "options"].map((n) => `${here}src/${n}.ts`),
  outdir: dist,
  bundle: true,
  // Classic scripts: content scripts cannot be modules, and one format keeps it simple.
  format: "iife",
  target: "chrome116",
  minify: false,
  sourcemap: false,
  legalComments: "none",
  logLevel: "warning",
});

cpSync(`${here}static`, dist, { recursive: true });
const manifest = JSON.parse(readFileSync(`${here}manifest.json`, "utf8"));
const version = JSON.parse(readFileSync(`${here}package.json`, "utf8")).version;
if (manifest.version !== version) {
  throw new Error(`manifest.json version ${manifest.version} != package.json version ${version}`);
}
writeFileSync(`${dist}/manifest.json`, `${JSON.stringify(manifest, null, 2)}\n`);
