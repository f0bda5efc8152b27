"""``featureflag-server gateway-config nginx|caddy|traefik|ingress-nginx``: print a config
with which the team's own gateway serves fork hosts, asking ``/api/forward-auth``
(:mod:`featureflag_server.forward_auth`) for each fork's token and upstream.

nginx and Caddy route each fork to its own upstream (nginx, given ``--upstream``, sends
every fork to that one app over kept-alive connections instead); Traefik and ingress-nginx
cannot pick a backend from an answer header, so they need ``--upstream`` (the QA app) and
send every fork there with the fork's token. The API token comes from
``FEATUREFLAG_API_TOKEN`` and is written into the output: keep the file private. See
``docs/gateways.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx

from featureflag.headers import TOKEN_HEADER

from .forward_auth import (
    UPSTREAM_AUTHORIZATION_HEADER,
    UPSTREAM_DIAL_HEADER,
    UPSTREAM_HEADER,
    UPSTREAM_HOST_HEADER,
    UPSTREAM_PATH_HEADER,
    UPSTREAM_SCHEME_HEADER,
)
from .forwarding import CLIENT_PROXY_HEADERS, OVERRIDE_COOKIE

__all__ = ["GATEWAYS", "GatewayOptions", "main", "render"]

GATEWAYS = ("nginx", "caddy", "traefik", "ingress-nginx")
OVERRIDES = TOKEN_HEADER
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_ANSWER = (
    UPSTREAM_HEADER,
    UPSTREAM_DIAL_HEADER,
    UPSTREAM_SCHEME_HEADER,
    UPSTREAM_HOST_HEADER,
    UPSTREAM_PATH_HEADER,
    UPSTREAM_AUTHORIZATION_HEADER,
)


class GatewayConfigError(ValueError):
    """An option cannot make a working config; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """What every renderer needs."""

    fork_domain: str
    service: str  # where the gateway reaches the service, e.g. http://127.0.0.1:8000
    listen: str  # HOST:PORT or PORT
    cache_dir: str
    api_token: str
    upstream: str | None = None  # Traefik and ingress-nginx: the one backend for every fork

    @property
    def service_url(self) -> httpx.URL:
        """--service, parsed."""
        return httpx.URL(self.service)

    @property
    def listen_port(self) -> str:
        """The port part of --listen."""
        return self.listen.rpartition(":")[2]


_DOWN = (
    "<!doctype html><meta charset=utf-8><title>{status} Fork upstream unreachable</title>"
    "<p>{status} &middot; featureflag gateway</p><h1>The fork could not reach its app</h1>"
    "<p>Its upstream did not answer. Check that the app is running and reachable from the "
    "gateway, or edit the fork on the featureflag service page. Then reload this page.</p>"
)
_NGINX_DOWN = _DOWN.format(status="502")
_CADDY_DOWN = _DOWN.format(status="{http.error.status_code}")


def _nginx_name(header: str) -> str:
    return "$featureflag_" + header.lower().removeprefix("x-featureflag-").replace("-", "_")


def _var(header: str) -> str:
    return "$upstream_http_" + header.lower().replace("-", "_")


def _nginx(o: GatewayOptions) -> str:
    service = o.service_url
    hostport = service.netloc.decode("ascii")
    domain = o.fork_domain
    ask = f"""        proxy_method GET;
        proxy_pass_request_headers off;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host {hostport};
        proxy_set_header Authorization "Bearer {o.api_token}";
        proxy_set_header X-Forwarded-Host $host;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Port $server_port;
        proxy_buffering on;"""
    sets = "\n".join(f"        auth_request_set {_nginx_name(h)} {_var(h)};" for h in _ANSWER)
    # The answer's headers, and proxy headers a visitor could forge (the upstream would
    # believe them): none reaches the upstream.
    drop = "".join(f'        proxy_set_header {h} "";\n' for h in (*_ANSWER, *CLIENT_PROXY_HEADERS))
    # Each fork's own upstream: nginx connects per request (a proxy_pass with variables
    # pools no connections). With --upstream every fork goes to that one app, over
    # kept-alive connections.
    target, upstream_host, fixed = "$featureflag_upstream", "$featureflag_upstream_host", ""
    # Unpooled connections: the upstream closes each after its answer, as with HTTP/1.0.
    connection, no_upgrade = "close", "ask the upstream to close (nginx pools none here)"
    if o.upstream:
        app = httpx.URL(o.upstream)
        port = app.port or (443 if app.scheme == "https" else 80)
        target, upstream_host = f"{app.scheme}://featureflag_app", app.netloc.decode("ascii")
        connection, no_upgrade = '""', "keep the connection for the next request"
        fixed = (
            "\n# Every fork's app (--upstream): the fork's own upstream is not used.\n"
            f"upstream featureflag_app {{\n    server {app.host}:{port};\n    keepalive 32;\n}}\n"
        )
    return f"""# featureflag: fork hosts *.{domain} through nginx with forward-auth.
# Rendered by `featureflag-server gateway-config nginx`; include it inside http {{ }}.
# It holds an API token: keep it readable by root only. See docs/gateways.md.

# Forward-auth answers, one per fork host, kept for the Cache-Control max-age the service
# sends (--forward-auth-cache). They hold fork tokens: the directory is nginx's alone.
proxy_cache_path {o.cache_dir} levels=1:2 keys_zone=featureflag_auth:1m
                 max_size=64m inactive=10m use_temp_path=off;

upstream featureflag_service {{
    server {hostport};
    keepalive 16;
}}
{fixed}
# WebSockets: pass Upgrade on. Otherwise {no_upgrade}.
map $http_upgrade $featureflag_connection {{
    default upgrade;
    ""      {connection};
}}

# The client's own {OVERRIDE_COOKIE} cookie never reaches the upstream (the fork's flags
# win); a Cookie header that still names it after one removal is dropped whole.
map $http_cookie $featureflag_cookie_once {{
    default $http_cookie;
    "~^(?<featureflag_before>(?:.*;)?)\\s*{OVERRIDE_COOKIE}=[^;]*(?<featureflag_after>.*)$"
        "$featureflag_before$featureflag_after";
}}
map $featureflag_cookie_once $featureflag_cookie {{
    default $featureflag_cookie_once;
    "~(?:^|;)\\s*{OVERRIDE_COOKIE}=" "";
}}

# Credentials in the fork's upstream URL (user:pass@) win over the client's own.
map $featureflag_upstream_authorization $featureflag_authorization {{
    default $featureflag_upstream_authorization;
    ""      $http_authorization;
}}

# Fork hosts. First on this address, so a host nginx knows nothing about is also
# answered by the service ("not a fork address", 404).
server {{
    listen {o.listen};
    server_name *.{domain};

    client_max_body_size 0;
    proxy_http_version 1.1;
    proxy_request_buffering off;  # bodies stream both ways
    proxy_buffering off;
    proxy_connect_timeout 10s;

    location / {{
        auth_request /.featureflag-forward-auth;
{sets}
        auth_request_set $featureflag_token {_var(OVERRIDES)};
        error_page 401 403 = @featureflag_refused;
        error_page 502 504 = @featureflag_unreachable;

        proxy_pass {target}$featureflag_upstream_path$request_uri;
        proxy_ssl_server_name on;
        proxy_ssl_name {upstream_host};
        proxy_set_header Host {upstream_host};
        proxy_set_header {OVERRIDES} $featureflag_token;
        proxy_set_header Cookie $featureflag_cookie;
        proxy_set_header Authorization $featureflag_authorization;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $featureflag_connection;
        proxy_set_header Keep-Alive "";
        proxy_set_header Proxy-Connection "";
        proxy_set_header Proxy-Authorization "";
        proxy_set_header TE "";
{drop}        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        # A redirect to the upstream's own address stays on the fork host.
        proxy_redirect $featureflag_upstream$featureflag_upstream_path/ /;
    }}

    location = /.featureflag-forward-auth {{
        internal;
        proxy_pass http://featureflag_service/api/forward-auth?deny=403;
{ask}
        proxy_cache featureflag_auth;
        proxy_cache_key $host;
        proxy_cache_lock on;
        # The service down: refuse (-> @featureflag_refused -> 502), never nginx's 500.
        error_page 500 502 503 504 =403 /.featureflag-service-down;
    }}

    location = /.featureflag-service-down {{
        internal;
        return 403;
    }}

    # A refusal: ask again without ?deny=403 for the page the visitor should see (404
    # unknown fork, 410 expired fork, 401 gateway token refused), with its status.
    location @featureflag_refused {{
        rewrite ^ /api/forward-auth? break;
        proxy_pass http://featureflag_service;
{ask}
    }}

    location @featureflag_unreachable {{
        default_type text/html;
        add_header Cache-Control no-store always;
        return 502 '{_NGINX_DOWN}';
    }}
}}

# The bare fork domain is the service itself: web page, API, /healthz.
server {{
    listen {o.listen};
    server_name {domain};

    client_max_body_size 16m;

    location / {{
        proxy_pass http://featureflag_service;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $http_host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
    }}
}}
"""


def _caddy(o: GatewayOptions) -> str:
    service = o.service_url
    hostport = service.netloc.decode("ascii")
    domain = o.fork_domain
    host, _, port = o.listen.rpartition(":")
    bind = f"\tbind {host}\n" if host and host not in ("0.0.0.0", "*") else ""
    copy = " ".join((OVERRIDES, *_ANSWER))
    dial = "{http.request.header." + UPSTREAM_DIAL_HEADER + "}"

    drop = "".join(f"\t\t\theader_up -{h}\n" for h in (*_ANSWER, *CLIENT_PROXY_HEADERS))
    tls = "\t\t\ttransport http {\n\t\t\t\ttls\n\t\t\t}\n"

    def proxy(matcher: str, tls: str) -> str:
        return f"""		reverse_proxy {matcher}{dial} {{
{tls}			header_up Host {{http.request.header.{UPSTREAM_HOST_HEADER}}}
			header_up Cookie "(^|;)\\s*{OVERRIDE_COOKIE}=[^;]*" "$1"
{drop}			flush_interval -1
		}}"""

    return f"""# featureflag: fork hosts *.{domain} through Caddy with forward_auth.
# Rendered by `featureflag-server gateway-config caddy`; run it with
#   caddy run --config Caddyfile --adapter caddyfile
# (or `import` it into your Caddyfile). It holds an API token: keep it private.

http://*.{domain}:{port} {{
{bind}	route {{
		forward_auth {hostport} {{
			uri /api/forward-auth
			header_up Host {hostport}
			header_up Authorization "Bearer {o.api_token}"
			header_up X-Forwarded-Host {{host}}
			header_up -Cookie
			header_up -Upgrade
			header_up -Connection
			copy_headers {copy}
		}}
		# The fork's path prefix, if its upstream URL has one.
		rewrite * {{http.request.header.{UPSTREAM_PATH_HEADER}}}{{uri}}
		@tls header {UPSTREAM_SCHEME_HEADER} https
{proxy("@tls ", tls)}
{proxy("", "")}
	}}
	handle_errors {{
		header Content-Type "text/html; charset=utf-8"
		header Cache-Control no-store
		respond "{_CADDY_DOWN}" {{http.error.status_code}}
	}}
}}

# The bare fork domain is the service itself: web page, API, /healthz.
http://{domain}:{port} {{
{bind}	reverse_proxy {hostport}
}}

# Any other host on this address: say so, rather than Caddy's empty answer.
http://:{port} {{
{bind}	header Content-Type "text/plain; charset=utf-8"
	respond "Not a fork address: fork addresses look like http://NAME.{domain}/" 404
}}
"""


def _fixed_upstream(o: GatewayOptions, gateway: str) -> httpx.URL:
    if not o.upstream:
        raise GatewayConfigError(
            f"{gateway} cannot pick a backend per fork from the forward-auth answer; give "
            "the app every fork goes to with --upstream URL (e.g. http://qa-app:8080), "
            "or use nginx or Caddy for forks with their own upstreams"
        )
    return httpx.URL(o.upstream)


def _traefik(o: GatewayOptions) -> str:
    upstream = _fixed_upstream(o, "Traefik")
    pattern = re.escape(o.fork_domain).replace("\\.", "\\.")
    config = {
        "http": {
            "routers": {
                "featureflag-forks": {
                    "rule": f"HostRegexp(`^[a-z0-9-]+\\.{pattern}$`)",
                    "entryPoints": ["web"],
                    "middlewares": [
                        "featureflag-gateway-token",
                        "featureflag-forward-auth",
                        "featureflag-clean",
                    ],
                    "service": "featureflag-forks",
                },
                "featureflag-service": {
                    "rule": f"Host(`{o.fork_domain}`)",
                    "entryPoints": ["web"],
                    "service": "featureflag-service",
                },
            },
            "middlewares": {
                # ForwardAuth cannot add a header of its own: this sets the bearer on
                # the request, ForwardAuth passes it on, featureflag-clean drops it.
                "featureflag-gateway-token": {
                    "headers": {"customRequestHeaders": {"Authorization": f"Bearer {o.api_token}"}}
                },
                "featureflag-forward-auth": {
                    "forwardAuth": {
                        "address": str(o.service_url.join("/api/forward-auth")),
                        "authRequestHeaders": ["Authorization"],
                        "authResponseHeaders": [OVERRIDES],
                    }
                },
                "featureflag-clean": {
                    "headers": {
                        "customRequestHeaders": {
                            "Authorization": "",
                            "Cookie": "",
                            # Proxy headers a visitor could forge (the upstream believes them).
                            **dict.fromkeys(CLIENT_PROXY_HEADERS, ""),
                        }
                    }
                },
            },
            "services": {
                "featureflag-forks": {"loadBalancer": {"servers": [{"url": str(upstream)}]}},
                "featureflag-service": {"loadBalancer": {"servers": [{"url": str(o.service_url)}]}},
            },
        }
    }
    return (
        "# featureflag: fork hosts through Traefik ForwardAuth (dynamic configuration, file "
        "provider).\n# Rendered by `featureflag-server gateway-config traefik`. It holds an "
        "API token: keep it private.\n" + json.dumps(config, indent=2) + "\n"
    )


def _ingress_nginx(o: GatewayOptions) -> str:
    upstream = _fixed_upstream(o, "ingress-nginx")
    backend, namespace = [*upstream.host.split("."), ""][:2]
    port = upstream.port or 80
    service = o.service_url
    namespace = namespace or "default"
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "featureflag-gateway-headers", "namespace": namespace},
            "data": {"Authorization": f"Bearer {o.api_token}"},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "featureflag-forks",
                "namespace": namespace,
                "annotations": {
                    "nginx.ingress.kubernetes.io/auth-url": str(
                        service.join("/api/forward-auth?deny=403")
                    ),
                    "nginx.ingress.kubernetes.io/auth-proxy-set-headers": (
                        f"{namespace}/featureflag-gateway-headers"
                    ),
                    "nginx.ingress.kubernetes.io/auth-response-headers": OVERRIDES,
                    "nginx.ingress.kubernetes.io/auth-cache-key": "$host",
                    "nginx.ingress.kubernetes.io/auth-cache-duration": "200 5s",
                    "nginx.ingress.kubernetes.io/proxy-request-buffering": "off",
                    "nginx.ingress.kubernetes.io/proxy-buffering": "off",
                    "nginx.ingress.kubernetes.io/proxy-body-size": "0",
                },
            },
            "spec": {
                "ingressClassName": "nginx",
                "rules": [
                    {
                        "host": f"*.{o.fork_domain}",
                        "http": {
                            "paths": [
                                {
                                    "path": "/",
                                    "pathType": "Prefix",
                                    "backend": {
                                        "service": {
                                            "name": backend,
                                            "port": {"number": port},
                                        }
                                    },
                                }
                            ]
                        },
                    }
                ],
            },
        },
    ]
    header = (
        "# featureflag: fork hosts through ingress-nginx with auth-url.\n"
        "# Rendered by `featureflag-server gateway-config ingress-nginx`; apply with\n"
        "# kubectl apply -f. The ConfigMap holds an API token (use a Secret-backed one\n"
        "# in production). JSON is YAML: kubectl reads it as is.\n"
    )
    return header + "\n---\n".join(json.dumps(doc, indent=2) for doc in docs) + "\n"


_RENDERERS = {
    "nginx": _nginx,
    "caddy": _caddy,
    "traefik": _traefik,
    "ingress-nginx": _ingress_nginx,
}


def render(gateway: str, options: GatewayOptions) -> str:
    """The configuration text for *gateway* (one of :data:`GATEWAYS`)."""
    _check(options)
    return _RENDERERS[gateway](options)


def _check(o: GatewayOptions) -> None:
    domain = o.fork_domain
    if not domain or not all(_LABEL.fullmatch(label) for label in domain.split(".")):
        raise GatewayConfigError(
            f"--fork-domain {domain!r} must be a host name like qa.example.com"
        )
    try:
        url = o.service_url
    except httpx.InvalidURL:
        url = httpx.URL("")
    if url.scheme not in ("http", "https") or not url.host or url.raw_path not in (b"", b"/"):
        raise GatewayConfigError(
            f"--service {o.service!r} must be the service's base URL, like http://127.0.0.1:8000"
        )
    host, sep, port = o.listen.rpartition(":")
    if not port.isdigit() or not 0 < int(port) < 65536 or (sep and not host):
        raise GatewayConfigError(
            f"--listen {o.listen!r} must be HOST:PORT or PORT, like 0.0.0.0:80"
        )
    if not o.api_token or any(c.isspace() or c in "\"'\\;{}" for c in o.api_token):
        raise GatewayConfigError(
            "set FEATUREFLAG_API_TOKEN to one of the service's API tokens "
            "(FEATUREFLAG_API_TOKENS); it must have no spaces, quotes, ';' or braces"
        )
    if any(c.isspace() or c in "\"';{}" for c in o.cache_dir) or not o.cache_dir:
        raise GatewayConfigError(f"--cache-dir {o.cache_dir!r} must be a path without spaces")


def build_parser() -> argparse.ArgumentParser:
    """The ``featureflag-server gateway-config`` command line."""
    parser = argparse.ArgumentParser(
        prog="featureflag-server gateway-config",
        description=(
            "Print a gateway configuration that serves fork hosts through the team's own "
            "ingress, asking the service's /api/forward-auth for each fork's token and "
            "upstream. The API token comes from FEATUREFLAG_API_TOKEN."
        ),
    )
    parser.add_argument("gateway", choices=GATEWAYS)
    parser.add_argument("--fork-domain", required=True, help="forks are NAME.<this domain>")
    parser.add_argument(
        "--service",
        default="http://127.0.0.1:8000",
        help="where the gateway reaches the service (http://127.0.0.1:8000)",
    )
    parser.add_argument("--listen", default="80", help="HOST:PORT or PORT to listen on (80)")
    parser.add_argument(
        "--cache-dir",
        default="/var/cache/nginx/featureflag",
        help="where nginx keeps forward-auth answers (/var/cache/nginx/featureflag)",
    )
    parser.add_argument(
        "--upstream",
        default=None,
        help=(
            "the one app every fork goes to: required for traefik and ingress-nginx (they "
            "cannot route per fork); for nginx, kept-alive connections to it"
        ),
    )
    return parser


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Print the config; a bad option is one line on stderr and exit code 2."""
    args = build_parser().parse_args(argv)
    options = GatewayOptions(
        fork_domain=args.fork_domain.strip().strip(".").lower(),
        service=args.service,
        listen=args.listen,
        cache_dir=args.cache_dir,
        api_token=environ.get("FEATUREFLAG_API_TOKEN", ""),
        upstream=args.upstream,
    )
    try:
        text = render(args.gateway, options)
    except GatewayConfigError as exc:
        print(f"featureflag-server gateway-config: {exc}.", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0
