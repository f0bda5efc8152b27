"""``featureflag-server gateway-config``: the configs it renders are valid for each gateway.

nginx and Caddy are also run live (tests/server/test_gateways_live.py); here nginx checks
the snippet with ``nginx -t`` and Caddy adapts it. Traefik's dynamic configuration is
validated against its published JSON schema (SchemaStore's
``traefik-v3-file-provider.json`` at SchemaStore/schemastore commit 2687b13281a9 of
2026-03-02, Apache-2.0, vendored in tests/fixtures), the Ingress manifest against
Kubernetes' own schemas (``kubernetes-validate``, offline).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from featureflag_server.__main__ import main
from featureflag_server.forwarding import CLIENT_PROXY_HEADERS
from featureflag_server.gateway_config import GatewayOptions, render

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOKEN = "gateway-token-0123456789"
ENV = {"FEATUREFLAG_API_TOKEN": TOKEN}
OPTIONS = GatewayOptions(
    fork_domain="qa.example.com",
    service="http://featureflag.qa.svc.cluster.local:8000",
    listen="0.0.0.0:8080",
    cache_dir="/var/cache/nginx/featureflag",
    api_token=TOKEN,
    upstream="http://qa-app.qa.svc.cluster.local:8080",
)


def documents(text: str) -> list[Any]:
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    return [json.loads(part) for part in body.split("\n---\n")]


def test_nginx_is_a_snippet_for_inside_http() -> None:
    text = render("nginx", OPTIONS)
    top_level = [
        line.split()[0]
        for line in text.splitlines()
        if line and not line[0].isspace() and line[0] not in "#}"
    ]
    assert set(top_level) == {"proxy_cache_path", "upstream", "map", "server"}
    assert "server_name *.qa.example.com;" in text
    assert "server_name qa.example.com;" in text
    assert f'"Bearer {TOKEN}"' in text
    assert "proxy_cache_path /var/cache/nginx/featureflag " in text
    assert "/api/forward-auth?deny=403" in text


def test_nginx_accepts_the_snippet(tmp_path: Path) -> None:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.skip("nginx is not installed: run scripts/install-gateways")
    options = GatewayOptions(
        fork_domain="qa.example.com",
        service="http://127.0.0.1:8000",
        listen="127.0.0.1:8080",
        cache_dir=str(tmp_path / "cache"),
        api_token=TOKEN,
    )
    (tmp_path / "featureflag.conf").write_text(render("nginx", options))
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
    (tmp_path / "nginx.conf").write_text(
        f"{user}pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\n"
        f"events {{}}\nhttp {{\n    include {tmp_path / 'featureflag.conf'};\n}}\n"
    )
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr


def test_caddy_adapts_the_caddyfile(tmp_path: Path) -> None:
    binary = shutil.which("caddy")
    if binary is None:
        pytest.skip("caddy is not installed: run scripts/install-gateways")
    path = tmp_path / "Caddyfile"
    path.write_text(render("caddy", OPTIONS))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run(
        [binary, "adapt", "--config", str(path), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    adapted = json.loads(result.stdout)
    servers = adapted["apps"]["http"]["servers"]
    hosts = [
        host
        for server in servers.values()
        for route in server["routes"]
        for match in route.get("match", [])
        for host in match.get("host", [])
    ]
    assert "*.qa.example.com" in hosts and "qa.example.com" in hosts


def traefik_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(
        (FIXTURES / "traefik-v3-file-provider.schema.json").read_text()
    )
    return schema


def test_traefik_dynamic_config_matches_the_published_schema() -> None:
    (config,) = documents(render("traefik", OPTIONS))
    jsonschema.validate(config, traefik_schema())
    http = config["http"]
    forward = http["middlewares"]["featureflag-forward-auth"]["forwardAuth"]
    assert forward["address"] == "http://featureflag.qa.svc.cluster.local:8000/api/forward-auth"
    assert forward["authResponseHeaders"] == ["Feature-Flag-Overrides"]
    assert http["routers"]["featureflag-forks"]["rule"] == (
        "HostRegexp(`^[a-z0-9-]+\\.qa\\.example\\.com$`)"
    )


def test_the_traefik_schema_can_fail() -> None:
    (config,) = documents(render("traefik", OPTIONS))
    config["http"]["middlewares"]["featureflag-forward-auth"]["forwardAuth"]["adress"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, traefik_schema())


def test_ingress_nginx_manifest_is_valid_kubernetes() -> None:
    docs = documents(render("ingress-nginx", OPTIONS))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30", strict=True)
    config_map, ingress = docs
    assert config_map["data"] == {"Authorization": f"Bearer {TOKEN}"}
    annotations = ingress["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "auth-url"].endswith("/api/forward-auth?deny=403")
    assert annotations[prefix + "auth-response-headers"] == "Feature-Flag-Overrides"
    assert annotations[prefix + "auth-proxy-set-headers"] == "qa/featureflag-gateway-headers"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "*.qa.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "qa-app", "port": {"number": 8080}}


def test_the_kubernetes_schemas_can_fail() -> None:
    _, ingress = documents(render("ingress-nginx", OPTIONS))
    ingress["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = 7
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(ingress, "1.30", strict=True)


def test_the_command_prints_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["gateway-config", "nginx", "--fork-domain", "QA.example.com.", "--listen", "8080"]
    assert main(argv, ENV) == 0
    out = capsys.readouterr().out
    assert "server_name *.qa.example.com;" in out
    assert "listen 8080;" in out


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["nginx", "--fork-domain", "qa.example.com"], {}, "FEATUREFLAG_API_TOKEN"),
        (["nginx", "--fork-domain", "qa..com"], ENV, "--fork-domain"),
        (["caddy", "--fork-domain", "qa.example.com", "--service", "localhost"], ENV, "--service"),
        (["nginx", "--fork-domain", "qa.example.com", "--listen", "host:port"], ENV, "--listen"),
        (["nginx", "--fork-domain", "q.example", "--cache-dir", "/a b"], ENV, "--cache-dir"),
        (["traefik", "--fork-domain", "qa.example.com"], ENV, "--upstream"),
        (["ingress-nginx", "--fork-domain", "qa.example.com"], ENV, "--upstream"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], env: dict[str, str], says: str
) -> None:
    assert main(["gateway-config", *argv], env) == 2
    err = capsys.readouterr().err
    assert err.startswith("featureflag-server gateway-config: ") and says in err
    assert err.count("\n") == 1


# --- issue 17, item 9: proxy headers a visitor could forge --------------------------------


@pytest.mark.parametrize("header", CLIENT_PROXY_HEADERS)
def test_the_gateways_drop_proxy_headers_a_visitor_sent(header: str) -> None:
    assert f'proxy_set_header {header} "";' in render("nginx", OPTIONS)
    assert f"header_up -{header}\n" in render("caddy", OPTIONS)
    (config,) = documents(render("traefik", OPTIONS))
    clean = config["http"]["middlewares"]["featureflag-clean"]["headers"]["customRequestHeaders"]
    assert clean[header] == ""
