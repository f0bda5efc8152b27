import { afterEach, describe, expect, it, vi } from "vitest";
import { createReporter } from "./report";

const tick = () => new Promise<void>((resolve) => queueMicrotask(resolve));

describe("createReporter", () => {
  const reporters: { close(): void }[] = [];
  afterEach(() => reporters.splice(0).forEach((r) => r.close()));
  const make = () => {
    const reporter = createReporter(window);
    reporters.push(reporter);
    return reporter;
  };

  it("posts one batched message per task, one entry per flag, to the page's own origin", async () => {
    const post = vi.spyOn(window, "postMessage");
    const reporter = make();
    reporter.add({ name: "a", value: false, source: "default" });
    reporter.add({ name: "b", value: "x", source: "override" });
    reporter.add({ name: "a", value: true, source: "override" });
    expect(post).not.toHaveBeenCalled();
    await tick();
    expect(post).toHaveBeenCalledTimes(1);
    expect(post).toHaveBeenCalledWith(
      {
        source: "featureflag-sdk",
        type: "evaluations",
        evaluations: [
          { name: "a", value: true, source: "override" },
          { name: "b", value: "x", source: "override" },
        ],
      },
      window.location.origin,
    );
    expect(window.location.origin).toMatch(/^http:\/\//);
  });

  it("does not send a flag again until what the app sees changes", async () => {
    const post = vi.spyOn(window, "postMessage");
    const reporter = make();
    reporter.add({ name: "a", value: false, source: "default" });
    await tick();
    reporter.add({ name: "a", value: false, source: "default" });
    await tick();
    expect(post).toHaveBeenCalledTimes(1);
    reporter.add({ name: "a", value: false, source: "default", rejected: "why" });
    await tick();
    expect(post).toHaveBeenCalledTimes(2);
    expect(post.mock.calls[1]![0]).toMatchObject({ evaluations: [{ name: "a", rejected: "why" }] });
  });

  it("re-sends everything when the extension says hello", async () => {
    const reporter = make();
    reporter.add({ name: "a", value: true, source: "override" });
    reporter.add({ name: "b", value: "x", source: "default" });
    await tick();
    const post = vi.spyOn(window, "postMessage");
    window.dispatchEvent(new MessageEvent("message", { data: { source: "featureflag-extension", type: "hello" } }));
    window.dispatchEvent(new MessageEvent("message", { data: { source: "someone-else", type: "hello" } }));
    expect(post).toHaveBeenCalledTimes(1);
    expect(post.mock.calls[0]![0]).toMatchObject({ evaluations: [{ name: "a" }, { name: "b" }] });
    reporter.close();
    window.dispatchEvent(new MessageEvent("message", { data: { source: "featureflag-extension", type: "hello" } }));
    expect(post).toHaveBeenCalledTimes(1);
  });

  it("stays quiet on a page without an origin", async () => {
    const post = vi.fn();
    const fake = { location: { origin: "null" }, postMessage: post, addEventListener() {}, removeEventListener() {} };
    const reporter = createReporter(fake as unknown as Window);
    reporter.add({ name: "a", value: true, source: "override" });
    await tick();
    expect(post).not.toHaveBeenCalled();
  });
});
