"""A Flask app behind the WSGI FeatureFlagMiddleware that calls a downstream service
through featureflag.propagation (a sync httpx client), for tests/test_propagation.py."""

from __future__ import annotations

from typing import Any

import httpx
from flask import Flask, jsonify

import featureflag
from featureflag.propagation import propagating_client
from featureflag.wsgi import FeatureFlagMiddleware


def checkout() -> bool:
    return featureflag.intercept("FlaskCaller.checkout", lambda: False)


def create_app(
    downstream: str, *, secret: str, allow_hosts: list[str], transport: httpx.BaseTransport
) -> FeatureFlagMiddleware:
    app = Flask(__name__)
    client = propagating_client(allow_hosts=allow_hosts, transport=transport)

    @app.get("/call")
    def call() -> Any:
        on = checkout()
        answer = client.get(downstream + "/flag").json()
        evals = [
            {"name": e.name, "value": e.value, "source": e.source, "service": e.service}
            for e in featureflag.evaluations()
        ]
        return jsonify(checkout=on, downstream=answer, evals=evals)

    return FeatureFlagMiddleware(app.wsgi_app, secret=secret)
