"""``featureflag-server`` (``python -m featureflag_server``): run the service on uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
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
            f"database {settings.database}, environment {settings.environment!r})",
            file=sys.stderr,
            flush=True,
        )
        serve(app, settings)
    finally:
        asyncio.run(store.close())
    return 0


def serve(app: ASGIApp, settings: Settings) -> None:
    """Run *app* on uvicorn with the service's options and limits until stopped."""
    import uvicorn

    # Everything built so far lives as long as the process: keep it out of the garbage
    # collector's way (it was ~5% of the CPU of a proxied request).
    gc.freeze()
    # LOG_CONFIG's lines use none of these; skip looking them up for every record
    # (the Logging HOWTO's "Optimization" switches).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
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
        # 503; an idle kept-alive connection is closed after keep_alive_timeout.
        http=settings.http,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        limit_concurrency=settings.max_connections,
        timeout_keep_alive=settings.keep_alive_timeout,
    )


if __name__ == "__main__":
    raise SystemExit(main())
