"""The OFREP endpoints, shared by the ASGI, WSGI and Django middleware.

``POST /ofrep/v1/evaluate/flags`` (OpenFeature Remote Evaluation Protocol, bulk) answers
with the request's *verified* overrides, so front ends (sdk-js, any OFREP web provider)
see the same overrides as the server::

    {"flags": [{"key": "new-lp", "value": "b", "reason": "STATIC", "variant": "b",
                "metadata": {"source": "override"}}]}

A request without a valid token gets ``{"flags": []}``. ``POST .../flags/{key}`` (single
flag, what server-side OFREP providers call) answers one ``evaluationSuccess``, or
``404 {"key": ..., "errorCode": "FLAG_NOT_FOUND"}`` when the token does not turn that
flag (the caller keeps its default). 200 answers carry an ``ETag``; a matching
``If-None-Match`` gets ``304``. A body that is not a JSON object with an object
``context`` gets ``400 {"errorCode": "INVALID_CONTEXT", "errorDetails": ...}``.
See docs/ofrep.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from ._http import NO_STORE, Config, RawHeaders, Request, response_headers

logger = logging.getLogger("featureflag")

MAX_BODY = 64 * 1024
JSON = (b"content-type", b"application/json")


def variant(value: bool | str) -> str:
    """The OFREP variant name of an override: ``true``/``false``, or the string itself."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def match(ofrep_path: str | None, path: str) -> str | None:
    """``""`` for the bulk endpoint, the flag key for the single-flag one, else None.

    *path* is the path below the app's mount point (without ``root_path``).
    """
    if ofrep_path is None or not path.startswith(ofrep_path):
        return None
    rest = path[len(ofrep_path) :]
    if not rest:
        return ""
    if len(rest) > 1 and rest[0] == "/":
        return rest[1:]
    return None


CORS_HINT = (
    "This is a CORS preflight that no CORS middleware answered: FeatureFlagMiddleware "
    "answers OFREP itself, so a CORS middleware inside it never sees these requests. "
    "Put the CORS middleware outside FeatureFlagMiddleware (with Starlette/FastAPI "
    "add_middleware, add CORSMiddleware after FeatureFlagMiddleware); see docs/middleware.md."
)


def _problem(body: bytes) -> str | None:
    """Why *body* is not a bulk evaluation request, or None when it is one."""
    if len(body) > MAX_BODY:
        return f"The request body is larger than {MAX_BODY} bytes."
    if not body.strip():
        return None  # the request body is optional in OFREP
    try:
        request = json.loads(body)
    except (ValueError, RecursionError) as error:
        return f"The request body is not JSON: {str(error)[:200]}"
    if not isinstance(request, dict):
        return 'The request body must be a JSON object, e.g. {"context": {}}.'
    if "context" in request and not isinstance(request["context"], dict):
        return 'The "context" member must be a JSON object.'
    return None


def _etag_matches(if_none_match: str, etag: str) -> bool:
    # RFC 9110 13.1.2: If-None-Match uses the weak comparison.
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(t.strip().removeprefix("W/") == opaque for t in if_none_match.split(","))


def evaluate(
    config: Config,
    request: Request,
    *,
    method: str,
    body: bytes,
    if_none_match: str | None,
    key: str | None = None,
    preflight: bool = False,
) -> tuple[int, RawHeaders, bytes]:
    """Status, headers and body of the OFREP answer to one request.

    *key* is None for the bulk endpoint, else the flag of the single-flag endpoint.
    *preflight* says the request is a CORS preflight (OPTIONS with
    ``Access-Control-Request-Method``): its 405 names the fix.
    """
    headers: RawHeaders = [JSON]
    status = 200
    payload: dict[str, Any]
    flags = request.verified.flags if request.verified is not None else {}
    if method != "POST":
        status = 405
        headers.append((b"allow", b"POST"))
        details = f"Use POST for {config.ofrep_path}, not {method}."
        if preflight:
            details = CORS_HINT
            logger.warning("OFREP: %s", CORS_HINT)
        payload = {"errorDetails": details}
    elif (problem := _problem(body)) is not None:
        status = 400
        payload = {"errorCode": "INVALID_CONTEXT", "errorDetails": problem}
        if key is not None:
            payload = {"key": key, **payload}
    elif key is not None:
        if key in flags:
            value = flags[key]
            payload = {
                "key": key,
                "value": value,
                "reason": "STATIC",
                "variant": variant(value),
                "metadata": {"source": "override"},
            }
        else:
            status = 404
            why = "carries no override for it" if request.verified else "carried no valid token"
            payload = {
                "key": key,
                "errorCode": "FLAG_NOT_FOUND",
                "errorDetails": f"Flag {key!r} is not overridden: the request {why}. "
                "Use the default written in your code.",
            }
            headers.append((b"cache-control", b"private, no-cache"))
    else:
        payload = {
            "flags": [
                {
                    "key": name,
                    "value": value,
                    "reason": "STATIC",
                    "variant": variant(value),
                    "metadata": {"source": "override"},
                }
                for name, value in flags.items()
            ]
        }
    # A lone surrogate (in a key from a leniently decoded path) can only stand inside a
    # JSON string, where "backslashreplace" writes it as the JSON escape \udXXX: the
    # answer stays valid JSON instead of raising UnicodeEncodeError (a 500).
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    content = text.encode("utf-8", "backslashreplace")
    if status == 200:
        etag = '"' + hashlib.blake2b(content, digest_size=12).hexdigest() + '"'
        headers.append((b"etag", etag.encode()))
        # An answer carrying overrides is per person: never stored. Without, clients
        # may keep it but revalidate (If-None-Match) each time.
        cache = NO_STORE if flags else "private, no-cache"
        headers.append((b"cache-control", cache.encode()))
        if if_none_match is not None and _etag_matches(if_none_match, etag):
            status, content = 304, b""
            headers.remove(JSON)
    if status != 304:
        headers.append((b"content-length", str(len(content)).encode()))
    return status, _finish(config, request, headers), content


def _finish(config: Config, request: Request, headers: RawHeaders) -> RawHeaders:
    # Vary and the refusal reason like any response; no Feature-Flags: no app code ran.
    due = request.report_due
    request.report_due = False
    try:
        return response_headers(config, request, headers)
    finally:
        request.report_due = due
