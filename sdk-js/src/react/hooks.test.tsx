import { act, cleanup, render, screen } from "@testing-library/react";
import { StrictMode } from "react";
import { renderToString } from "react-dom/server";
import { afterEach, describe, expect, it, vi } from "vitest";
import { createClient } from "../client";
import { FeatureFlagProvider, useBoolFlag, useFeatureFlagClient, useFlagDetails, useStringFlag } from "./index";

const ENDPOINT = "http://app.test/ofrep/v1/evaluate/flags";
const answer = (items: Record<string, boolean | string>) =>
  new Response(JSON.stringify({ flags: Object.entries(items).map(([key, value]) => ({ key, value })) }), {
    status: 200,
  });

function Page() {
  const enabled = useBoolFlag("some-awesome-new-feature");
  const variant = useStringFlag("lp-variant", "a");
  return <p>{`enabled=${enabled} variant=${variant}`}</p>;
}

describe("React bindings", () => {
  afterEach(() => {
    cleanup();
    vi.unstubAllGlobals();
  });

  it("renders defaults while loading, then the overrides from the page's origin", async () => {
    let respond!: (response: Response) => void;
    const fetchImpl = vi.fn<typeof fetch>(() => new Promise((resolve) => (respond = resolve)));
    vi.stubGlobal("fetch", fetchImpl);
    render(
      <FeatureFlagProvider>
        <Page />
      </FeatureFlagProvider>,
    );
    expect(screen.getByText("enabled=false variant=a")).toBeTruthy();
    expect(fetchImpl.mock.calls[0]![0]).toBe(`${window.location.origin}/ofrep/v1/evaluate/flags`);
    await act(async () => respond(answer({ "some-awesome-new-feature": true, "lp-variant": "b" })));
    expect(screen.getByText("enabled=true variant=b")).toBeTruthy();
  });

  it("starts from the provider's initial values", async () => {
    const fetchImpl = vi.fn<typeof fetch>(() => new Promise(() => {}));
    render(
      <FeatureFlagProvider endpoint={ENDPOINT} fetch={fetchImpl} initial={{ "lp-variant": "c" }}>
        <Page />
      </FeatureFlagProvider>,
    );
    expect(screen.getByText("enabled=false variant=c")).toBeTruthy();
  });

  it("server-renders from initial without fetching", () => {
    const fetchImpl = vi.fn<typeof fetch>();
    const html = renderToString(
      <FeatureFlagProvider endpoint={ENDPOINT} fetch={fetchImpl} initial={{ "some-awesome-new-feature": true }}>
        <Page />
      </FeatureFlagProvider>,
    );
    expect(html).toContain("enabled=true variant=a");
    expect(fetchImpl).not.toHaveBeenCalled();
  });

  it("useBoolFlag ignores a string override, stays boolean and reports it as rejected", async () => {
    const post = vi.spyOn(window, "postMessage");
    const seen: unknown[] = [];
    function Probe() {
      const value = useBoolFlag("some-awesome-new-feature", false);
      seen.push(value);
      return <span>{typeof value}</span>;
    }
    const fetchImpl = async () => answer({ "some-awesome-new-feature": "on" });
    await act(async () => {
      render(
        <FeatureFlagProvider endpoint={ENDPOINT} fetch={fetchImpl}>
          <Probe />
        </FeatureFlagProvider>,
      );
    });
    await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
    expect(seen.every((value) => value === false)).toBe(true);
    const entries = post.mock.calls.flatMap(([message]) => (message as { evaluations: unknown[] }).evaluations);
    expect(entries).toContainEqual({
      name: "some-awesome-new-feature",
      value: false,
      source: "default",
      rejected:
        'Flag "some-awesome-new-feature" is read as a boolean (useBoolFlag/getBool) but the override is the string "on"; send true or false',
    });
    for (const [, targetOrigin] of post.mock.calls) expect(targetOrigin).toBe(window.location.origin);
  });

  it("reports each flag once per change, batched, not on every render", async () => {
    const post = vi.spyOn(window, "postMessage");
    const client = createClient({ endpoint: ENDPOINT, fetch: async () => answer({ "lp-variant": "b" }) });
    const { rerender } = render(
      <FeatureFlagProvider client={client}>
        <Page />
        <Page />
      </FeatureFlagProvider>,
    );
    rerender(
      <FeatureFlagProvider client={client}>
        <Page />
        <Page />
      </FeatureFlagProvider>,
    );
    await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
    expect(post).toHaveBeenCalledTimes(1);
    expect(post.mock.calls[0]![0]).toEqual({
      source: "featureflag-sdk",
      type: "evaluations",
      evaluations: [
        { name: "some-awesome-new-feature", value: false, source: "default" },
        { name: "lp-variant", value: "a", source: "default" },
      ],
    });
    await act(() => client.refresh());
    await act(async () => new Promise((resolve) => setTimeout(resolve, 0)));
    expect(post).toHaveBeenCalledTimes(2);
    expect(post.mock.calls[1]![0]).toMatchObject({ evaluations: [{ name: "lp-variant", value: "b", source: "override" }] });
    client.close();
  });

  it("keeps defaults, warns once and does not throw when the endpoint fails", async () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const fetchImpl = async () => new Response("<h1>500</h1>", { status: 500 });
    await act(async () => {
      render(
        <FeatureFlagProvider endpoint={ENDPOINT} fetch={fetchImpl}>
          <Page />
          <Page />
        </FeatureFlagProvider>,
      );
    });
    expect(screen.getAllByText("enabled=false variant=a")).toHaveLength(2);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toMatch(/^featureflag: could not load flags from .*HTTP 500; using defaults$/);
  });

  it("works under StrictMode (double effects do not close the client for good)", async () => {
    const fetchImpl = vi.fn(async () => answer({ "lp-variant": "b" }));
    await act(async () => {
      render(
        <StrictMode>
          <FeatureFlagProvider endpoint={ENDPOINT} fetch={fetchImpl}>
            <Page />
          </FeatureFlagProvider>
        </StrictMode>,
      );
    });
    expect(screen.getByText("enabled=false variant=b")).toBeTruthy();
  });

  it("answers defaults outside a provider, with one warning", () => {
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    render(
      <>
        <Page />
        <Page />
      </>,
    );
    expect(screen.getAllByText("enabled=false variant=a")).toHaveLength(2);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![0]).toMatch(/outside <FeatureFlagProvider>/);
  });

  it("gives details and the client to components that want them", async () => {
    const client = createClient({ initial: { x: "on" }, report: false });
    let details: unknown;
    let found: unknown;
    function Probe() {
      details = useFlagDetails("x", false);
      found = useFeatureFlagClient();
      return null;
    }
    render(
      <FeatureFlagProvider client={client}>
        <Probe />
      </FeatureFlagProvider>,
    );
    expect(details).toMatchObject({ flagKey: "x", value: false, reason: "ERROR", errorCode: "TYPE_MISMATCH" });
    expect(found).toBe(client);
  });
});
