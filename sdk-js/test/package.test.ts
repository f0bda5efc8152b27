// @vitest-environment node
// The published artefact: `npm pack` makes a tarball that installs and imports from both
// entry points, as ESM and CommonJS, with types that resolve under NodeNext.
import { execFileSync } from "node:child_process";
import { runInNewContext } from "node:vm";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const PKG = resolve(__dirname, "..");
const run = (cmd: string, args: string[], cwd: string) =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });

describe("npm pack", () => {
  let dir = "";
  let files: string[] = [];

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "featureflag-sdk-pack-"));
    // Build first (what `prepack` does for a publish), so the tarball never ships a stale build.
    run("npm", ["run", "build"], PKG);
    const packArgs = ["pack", "--json", "--ignore-scripts", "--pack-destination", dir];
    const packed = JSON.parse(run("npm", packArgs, PKG)) as [
      { filename: string; files: { path: string }[] },
    ];
    files = packed[0].files.map((f) => f.path);
    const tarball = join(dir, packed[0].filename);
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: "module" }));
    // React is an optional peer: link the one we test with rather than fetch it again.
    const links = ["react", "@types/react"].map((name) => join(PKG, "node_modules", name));
    run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--loglevel=error", tarball, ...links], dir);
  }, 120_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("ships the builds and no sources or tests", () => {
    for (const path of ["dist/index.js", "dist/index.cjs", "dist/index.d.ts", "dist/react.js", "dist/react.cjs"]) {
      expect(files).toContain(path);
    }
    expect(files).toContain("dist/featureflag.iife.js");
    expect(files.filter((f) => f.startsWith("src/") || f.includes(".test."))).toEqual([]);
  });

  it("has a script bundle that defines window.FeatureFlag", () => {
    const bundle = readFileSync(join(dir, "node_modules", "@featureflag", "sdk", "dist", "featureflag.iife.js"), "utf8");
    const sandbox: { FeatureFlag?: { createClient(o: object): { getString(n: string, d: string): string } } } = {};
    runInNewContext(bundle, sandbox);
    const client = sandbox.FeatureFlag!.createClient({ initial: { "lp-variant": "b" }, report: false });
    expect(client.getString("lp-variant", "a")).toBe("b");
  });

  it("imports both entry points as ESM", () => {
    writeFileSync(
      join(dir, "esm.mjs"),
      `import { createClient } from "@featureflag/sdk";
import { FeatureFlagProvider, useBoolFlag, useStringFlag } from "@featureflag/sdk/react";
const c = createClient({ endpoint: "http://x.test/", initial: { a: true } });
console.log(JSON.stringify([c.getBool("a"), typeof FeatureFlagProvider, typeof useBoolFlag, typeof useStringFlag]));`,
    );
    expect(JSON.parse(run("node", ["esm.mjs"], dir))).toEqual([true, "function", "function", "function"]);
  }, 30_000);

  it("requires both entry points as CommonJS", () => {
    writeFileSync(
      join(dir, "cjs.cjs"),
      `const { createClient } = require("@featureflag/sdk");
const { useBoolFlag } = require("@featureflag/sdk/react");
console.log(JSON.stringify([createClient({ initial: { a: "b" } }).getString("a", "z"), typeof useBoolFlag]));`,
    );
    expect(JSON.parse(run("node", ["cjs.cjs"], dir))).toEqual(["b", "function"]);
  }, 30_000);

  it("type-checks a consumer under NodeNext resolution", () => {
    writeFileSync(
      join(dir, "consumer.mts"),
      `import { createClient, type FeatureFlagClient } from "@featureflag/sdk";
import { useBoolFlag } from "@featureflag/sdk/react";
const client: FeatureFlagClient = createClient();
const b: boolean = client.getBool("x");
const hook: (name: string, d?: boolean) => boolean = useBoolFlag;
export { b, hook };`,
    );
    const tsc = join(PKG, "node_modules", "typescript", "bin", "tsc");
    const args = ["--noEmit", "--strict", "--module", "nodenext", "--moduleResolution", "nodenext", "consumer.mts"];
    expect(() => run("node", [tsc, ...args], dir)).not.toThrow();
    expect(readdirSync(join(dir, "node_modules", "@featureflag", "sdk", "dist"))).toContain("react.d.cts");
  }, 120_000);
});
