"""``featureflag-server`` (``python -m featureflag_server``): run the service on uvicorn
(the default) or hypercorn (``--server hypercorn``)."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import logging
import logging.config
import os
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

    app = create_app(settings, store=store)
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
    if settings.server == "hypercorn":
        _serve_hypercorn(app, settings)
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


def _serve_hypercorn(app: ASGIApp, settings: Settings) -> None:
    from hypercorn.asyncio import serve as hypercorn_serve
    from hypercorn.config import Config
    from hypercorn.utils import LifespanFailureError
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    logging.config.dictConfig(LOG_CONFIG)
    config = Config()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    config.bind = [f"{host}:{settings.port}"]
    config.include_server_header = False
    config.errorlog = logging.getLogger("hypercorn.error")
    config.accesslog = logging.getLogger("hypercorn.access") if settings.access_log else None
    config.access_log_format = '%(h)s - "%(m)s %(Uq)s HTTP/%(H)s" %(s)s'  # uvicorn's line
    # Limits on direct connections (docs/server.md, "Limits"). One idle timer: it runs
    # from a connection's start and from the end of each response until a request head
    # is complete, then the connection is closed (header_timeout == keep_alive_timeout,
    # Settings makes sure). No read_timeout: it would also close a quiet WebSocket.
    # HTTP/2 without TLS (which hypercorn accepts) gets the same bound on header lists;
    # its preface escapes the idle timer (docs/server.md, "What hypercorn does not bound").
    config.keep_alive_timeout = settings.keep_alive_timeout
    config.h11_max_incomplete_size = settings.max_header_bytes
    config.h2_max_header_list_size = settings.max_header_bytes
    # uvicorn's own middleware, as uvicorn.run(proxy_headers=True) adds it: hypercorn's
    # ProxyFixMiddleware trusts X-Forwarded-For from any client, not only these.
    trusted = ProxyHeadersMiddleware(app, trusted_hosts=settings.forwarded_allow_ips)  # type: ignore[arg-type]
    use_uvloop = settings.loop == "uvloop" or (
        settings.loop == "auto" and importlib.util.find_spec("uvloop") is not None
    )
    loop_factory = None
    if use_uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    try:
        # Without a shutdown_trigger, serve() stops gracefully on SIGINT and SIGTERM.
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(hypercorn_serve(trusted, config, mode="asgi"))  # type: ignore[arg-type]
    except LifespanFailureError as exc:
        # As uvicorn does: the app said why, the exit code says start-up failed.
        logging.getLogger("hypercorn.error").error("Application startup failed: %s", exc)
        raise SystemExit(3) from None


if __name__ == "__main__":
    raise SystemExit(main())
