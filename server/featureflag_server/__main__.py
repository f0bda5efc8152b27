"""``featureflag-server`` (``python -m featureflag_server``): run the service on uvicorn
(the default) or granian (``--server granian``)."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from starlette.types import ASGIApp

from featureflag.exceptions import ConfigurationError

from .errors import StoreError
from .logs import LOG_CONFIG
from .settings import Settings, load_settings

EXIT_CONFIG = 2  # like argparse: the command cannot run as configured


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Start the service; a configuration problem is one clear message and exit code 2."""
    env = os.environ if environ is None else environ
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["gateway-config"]:
        from .gateway_config import main as gateway_config

        return gateway_config(args[1:], env)
    if args[:1] == ["migrate"]:
        from .migrate import main as migrate

        return migrate(args[1:], env)
    try:
        settings = load_settings(args, env)
        # Open the store here, not in the lifespan, so a bad --db is one clear line
        # instead of uvicorn's start-up traceback.
        from .store import open_store

        store = open_store(str(settings.db), migrate=settings.migrate)
    except (ConfigurationError, StoreError) as exc:
        print(f"featureflag-server: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    from .app import create_app

    # The lifespan's shutdown closes the store: uvicorn raises SIGTERM again once it has
    # shut down, so nothing after serve() runs then (the finally below is for the rest;
    # closing twice is a no-op).
    app = create_app(settings, store=store, close_store=True)
    try:
        print(
            f"featureflag-server: serving on http://{settings.host}:{settings.port} "
            f"(forks at http://NAME.{settings.fork_domain}:{settings.port}/, "
            f"database {settings.database}, environment {settings.environment!r}, "
            f"on {settings.server})",
            file=sys.stderr,
            flush=True,
        )
        serve(app, settings)
    finally:
        asyncio.run(store.close())
    return 0


def serve(app: ASGIApp, settings: Settings) -> None:
    """Run *app* on the chosen server with the service's options and limits until stopped
    (SIGTERM or SIGINT: in-flight requests finish, then the lifespan shuts down)."""
    # Everything built so far lives as long as the process: keep it out of the garbage
    # collector's way (it was ~5% of the CPU of a proxied request).
    gc.freeze()
    # LOG_CONFIG's lines use none of these; skip looking them up for every record
    # (the Logging HOWTO's "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    if settings.server == "granian":
        _serve_granian(app, settings)
        return
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
        server_header=False,
        log_level="info",
        log_config=LOG_CONFIG,
        access_log=settings.access_log,
        loop=settings.loop,
        # Limits on direct connections (docs/server.md, "Limits"): h11 refuses a request
        # head past max_header_bytes with a 400; past max_connections a request gets a
        # 503; an idle kept-alive connection is closed after keep_alive_timeout. uvicorn
        # has no header timeout (Settings refuses one).
        http=settings.http,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_timeout,
    )


def _serve_granian(app: ASGIApp, settings: Settings) -> None:
    import uvicorn
    from granian.constants import HTTPModes, Interfaces
    from granian.errors import FatalError
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server.embed import Server
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    assert settings.header_timeout is not None  # Settings fills it in for granian
    # Limits on direct connections (docs/server.md, "Limits"), all hyper's (granian's
    # HTTP/1.1 is hyper's http1 connection):
    # - HTTP/1.1 only: no HTTP/2 without TLS, whose preface would start a connection no
    #   header timer covers; hyper answers the preface by closing the connection.
    # - header_read_timeout: one timer from a connection's start, and from the end of each
    #   response, until a request head is complete (a fixed deadline, not reset by bytes);
    #   so it is the keep-alive timeout too (Settings makes them one value).
    # - max_buffer_size: past it with no complete head, hyper answers 431 and closes.
    # - backpressure: a semaphore permit per accepted connection, held until it closes;
    #   connections past the cap wait in the listen backlog, unaccepted.
    http1 = HTTP1Settings(
        header_read_timeout=settings.header_timeout * 1000,
        keep_alive=True,
        max_buffer_size=settings.max_header_bytes,
    )
    server = Server(
        # uvicorn's own middleware, as uvicorn.run(proxy_headers=True) adds it.
        ProxyHeadersMiddleware(app, trusted_hosts=settings.forwarded_allow_ips),  # type: ignore[arg-type]
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        http=HTTPModes.http1,
        websockets=True,
        backlog=2048,  # uvicorn's
        backpressure=settings.max_connections,
        http1_settings=http1,
        log_level=LogLevels.info,
        log_dictconfig=copy.deepcopy(LOG_CONFIG),  # granian sets levels in it
        log_access=settings.access_log,
        # uvicorn's line, less the client's port (granian logs only the address) and the
        # query string (its own field: a bare "?" would end every other line).
        log_access_format='%(addr)s - "%(method)s %(path)s %(protocol)s" %(status)d',
    )

    async def run() -> bool:
        loop = asyncio.get_running_loop()
        # The embedded server sets no signal handlers: stop() stops accepting, lets
        # in-flight requests finish, then runs the lifespan's shutdown.
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.stop)
        try:
            await server.serve()
        except FatalError:  # the lifespan's startup failed; granian has logged why
            return False
        return not server.interrupt_children  # empty unless a worker ended on its own

    # The event loop --loop names, chosen as uvicorn chooses it (auto: uvloop if installed).
    loop_factory = uvicorn.Config(app, loop=settings.loop).get_loop_factory()
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if not runner.run(run()):
            raise SystemExit(3)  # as uvicorn: start-up failed


if __name__ == "__main__":
    raise SystemExit(main())
