// @vitest-environment node
// House style: every export of both entry points has JSDoc with an @example.
import { readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = resolve(__dirname, "..", "src");

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sources(path);
    return /\.tsx?$/.test(entry.name) && !entry.name.includes(".test.") ? [path] : [];
  });
}

function exportedNames(entry: string): string[] {
  const text = readFileSync(join(SRC, entry), "utf8");
  return [...text.matchAll(/export (?:type )?\{([^}]*)\}/g)].flatMap((m) =>
    m[1]!
      .split(",")
      .map((name) => name.replace(/^\s*type\s+/, "").trim())
      .filter(Boolean),
  );
}

const documented = new Set<string>();
for (const file of sources(SRC)) {
  const text = readFileSync(file, "utf8");
  for (const m of text.matchAll(/\/\*\*((?:(?!\*\/)[\s\S])*)\*\/\s*export (?:function|const|interface|type|class) (\w+)/g)) {
    if (m[1]!.includes("@example")) documented.add(m[2]!);
  }
}

describe.each(["index.ts", "react/index.ts"])("exports of src/%s", (entry) => {
  const names = exportedNames(entry);
  it("are found", () => expect(names.length).toBeGreaterThan(3));
  it.each(names)("%s has JSDoc with an @example", (name) => {
    expect(documented.has(name)).toBe(true);
  });
});
