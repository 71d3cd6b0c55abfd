"""The API's edge: every input is checked before it reaches SQL or the filesystem.

`InputEdge` is an ASGI middleware in front of every route:

    request body larger than `max_body_bytes`          413 (by Content-Length, or while reading)
    NUL byte, unpaired surrogate or bytes that are not
      UTF-8 in a query parameter's name or value       422 naming the parameter
    the same in any string of a JSON body (keys too)   422 naming the field ("sensors.0.quantity")
    the same in the path                               404 (no such resource can exist)
    a JSON body nested too deeply to parse              422

PostgreSQL's text cannot hold NUL, and UTF-8 cannot hold a lone surrogate: without
this edge such a string reaches the database and fails there. A body that is not
JSON passes on unchanged, for the route's own validation to refuse.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response

__all__ = ["InputEdge", "bad_string"]

# NUL, and UTF-16 surrogates (a str holds one only when it is unpaired)
_BAD = re.compile("[\x00\ud800-\udfff]")


def bad_string(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    found = _BAD.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL byte"
    return "contains an unpaired UTF-16 surrogate (or bytes that are not UTF-8)"


def _bad_in_json(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            reason = bad_string(item)
            if reason:
                yield where, reason
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                reason = bad_string(key)
                if reason:
                    yield name, f"name {reason}"
                stack.append((name, child))
        elif isinstance(item, list):
            stack.extend((f"{where}.{i}" if where else str(i), child) for i, child in enumerate(item))


def _is_json(content_type: str) -> bool:
    """What FastAPI reads as JSON: application/json, */*+json, and a body without a content type."""
    media = content_type.split(";", 1)[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


def _invalid(where: str, errors: list[tuple[str, str]]) -> Any:
    listed = [{"in": where, "name": name, "message": message} for name, message in errors]
    detail = "; ".join(f"{where} parameter '{e['name']}': {e['message']}" for e in listed)
    return problem_response(422, detail, title="Invalid request", errors=listed)


class _TooLarge(Exception):
    pass


class InputEdge:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if bad_string(scope.get("path", "")):
            await problem_response(404, "no such resource")(scope, receive, send)
            return
        # surrogateescape: bytes that are not UTF-8 (an encoded surrogate among them) become
        # lone surrogates here, and are refused with the rest
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True,
                          errors="surrogateescape")
        errors = [(name, reason) for name, value in query
                  for reason in [bad_string(name), bad_string(value)] if reason]
        if errors:
            await _invalid("query", errors[:20])(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(scope, receive, send)
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await self._too_large(scope, receive, send)
            return
        if body and _is_json(headers.get("content-type", "")):
            try:
                document = json.loads(body)
            except ValueError:
                document = None  # not JSON: the route's validation answers
            except RecursionError:
                await _invalid("body", [("", "is nested too deeply")])(scope, receive, send)
                return
            errors = list(_bad_in_json(document, "")) if document is not None else []
            if errors:
                await _invalid("body", sorted(errors)[:20])(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, f"the request body is larger than {self.max_body_bytes} bytes",
                                    headers={"Connection": "close"})
        await response(scope, receive, send)
