"""A stand-in for GitHub's issue-comments REST API, for examples/ci/preview.sh tests.

In memory: ``GET``/``POST /repos/{owner}/{repo}/issues/{number}/comments`` and ``PATCH
/repos/{owner}/{repo}/issues/comments/{id}``, with ``Authorization: Bearer gh-test-token``.
``GET /_writes`` lists every POST and PATCH it took, in order.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

TOKEN = "gh-test-token"


def create_app() -> Starlette:
    """A fresh API with no comments."""
    comments: dict[int, dict[str, Any]] = {}
    writes: list[dict[str, Any]] = []

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    async def issue_comments(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        number = int(request.path_params["number"])
        if request.method == "GET":
            return JSONResponse([c for c in comments.values() if c["issue"] == number])
        body = (await request.json())["body"]
        comment = {"id": 1000 + len(comments), "issue": number, "body": body}
        comments[comment["id"]] = comment
        writes.append({"method": "POST", "id": comment["id"], "body": body})
        return JSONResponse(comment, status_code=201)

    async def one_comment(request: Request) -> JSONResponse:
        if not authorized(request):
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        comment = comments.get(int(request.path_params["id"]))
        if comment is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        comment["body"] = (await request.json())["body"]
        writes.append({"method": "PATCH", "id": comment["id"], "body": comment["body"]})
        return JSONResponse(comment)

    async def recorded(request: Request) -> JSONResponse:
        return JSONResponse(writes)

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            Route("/", ready),
            Route("/_writes", recorded),
            Route(
                "/repos/{owner}/{repo}/issues/{number:int}/comments",
                issue_comments,
                methods=["GET", "POST"],
            ),
            Route("/repos/{owner}/{repo}/issues/comments/{id:int}", one_comment, methods=["PATCH"]),
        ]
    )
