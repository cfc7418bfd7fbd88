"""The service's front door: one ASGI middleware that every request passes before BentoML reads
its body.

- Probes (`/healthz`, `/readyz`, `/livez`), `/metrics` and the API's description (the docs UI at
  `/`, `/docs.json`, their static files) are open: they carry no data and no decision (the
  description is the request schema every client needs). Everything else needs
  `Authorization: Bearer <token>` (auth.py): none or an unknown one gets 401 with
  `WWW-Authenticate: Bearer`, a token without the route's scope 403 naming the scope.
- A POST body must be JSON (415 otherwise) and at most `max_body_bytes`: the middleware reads
  the body itself, refusing with 413 as soon as it passes the limit (or at once when
  Content-Length says so), and hands the one buffered body to BentoML.
- Every error answer of a guarded route (BentoML's own 400s and 500s included) is JSON with
  `error` (what the client can do) and `error_id`; what the service knew (BentoML's message, a
  log's reason) goes to the server log under that id, never to the client.

The verified caller's name is `CALLER` (a context variable) while the request runs: the API
methods record it with each prediction and label.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

from {{ cookiecutter.package_name }}.schema import Schema
from {{ cookiecutter.package_name }}.serving.auth import TokenVerifier

logger = logging.getLogger("bentoml")

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/livez", "/metrics", "/", "/docs.json"})
PUBLIC_PREFIX = "/static_content/"  # the docs UI's scripts and styles
DOCS = "/docs.json"  # the OpenAPI document, which says here which token each route needs
SCOPE_OF_ROUTE = {
    "/predict": "predict",
    "/predict_simulated": "simulate",
    "/explain": "explain",
    "/feedback": "feedback",
}
CALLER: ContextVar[str] = ContextVar("caller")  # the token's name, set for a guarded request

BEARER = b"bearer "
Refusal = tuple[int, str, list[tuple[bytes, bytes]]]
ADVICE = {  # for an error answer that says nothing the client can act on
    400: "the request is malformed: fix what `detail` names (see /docs.json)",
    404: "no such endpoint: the API is described at /docs.json",
    405: "method not allowed: the endpoints take POST with a JSON body (see /docs.json)",
    500: "the service failed on this request: retry later; quote error_id if you report it",
    504: "the request took too long: retry later, with fewer records",
}


def new_error_id() -> str:
    return secrets.token_hex(8)


def error_body(message: str, error_id: str, **more: Any) -> bytes:
    return json.dumps({"error": message, "error_id": error_id, **more}).encode()


def derived_body_limit(schema: Schema, max_records: int) -> int:
    """`serving.max_body_bytes` when null: `max_records` records of the schema's columns, each
    sized generously (its name, a value as long as JSON can make it: 32 characters for a
    number, the longest category with every character escaped as \\uXXXX), doubled for
    whitespace and indentation, plus 4 KiB for the envelope. A legitimate request stays far
    below it; a 35 MB body is refused after its first chunk."""
    per_record = 0
    for column in schema.columns:
        longest = max((len(category) for category in column.categories), default=0)
        value = 6 * longest + 2 if column.type == "category" else 32
        per_record += len(column.name) + 8 + value
    return 2 * per_record * max_records + 4096


class Guard:
    """Authentication, the JSON-only and body-size rules, and error bodies with an id."""

    def __init__(self, app: Any, tokens: TokenVerifier, max_body_bytes: int) -> None:
        self.app = app
        self.tokens = tokens
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX):
            await self.app(scope, receive, DocumentedAuth(send) if path == DOCS else send)
            return
        send = ErrorIds(send, scope)
        authorization = content_type = content_length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"content-type":
                content_type = value
            elif name == b"content-length":
                content_length = value
        if not self.tokens.loaded:
            self.tokens.load()  # the service loads it at start; an app without that, here
        caller = self._caller(path, authorization)
        if not isinstance(caller, str):
            status, message, headers = caller
            await respond(send, status, message, headers)
            return
        if scope["method"] == "POST":
            media_type = (content_type or b"application/json").split(b";")[0].strip().lower()
            if media_type != b"application/json":
                shown = media_type.decode("latin-1")
                message = f"Content-Type must be application/json, got {shown!r}: send JSON"
                await respond(send, 415, message)
                return
        declared = int(content_length) if content_length and content_length.isdigit() else 0
        if declared > self.max_body_bytes:  # refused before any of it is read
            await self._too_large(send)
            return
        body = await read_body(receive, self.max_body_bytes)
        if body is None:
            await self._too_large(send)
            return
        if body is DISCONNECTED:
            return
        caller_set = CALLER.set(caller)
        try:
            await self.app(scope, replaying(body, receive), send)
        finally:
            CALLER.reset(caller_set)

    def _caller(self, path: str, authorization: bytes | None) -> str | Refusal:
        """The caller's name, or why not: 401 or 403 (status, message, headers)."""
        if authorization is None or authorization[:7].lower() != BEARER:
            return (
                401,
                "authentication required: send `Authorization: Bearer <token>`"
                " (the service's operator creates tokens: make token)",
                [(b"www-authenticate", b"Bearer")],
            )
        caller = self.tokens.verify(authorization[7:].strip())
        if caller is None:
            return (
                401,
                "the token is not valid (unknown or revoked): ask the service's operator for one",
                [(b"www-authenticate", b'Bearer error="invalid_token"')],
            )
        needed = SCOPE_OF_ROUTE.get(path)
        if needed is not None and needed not in caller.scopes:
            return (
                403,
                f"the token '{caller.name}' lacks the scope '{needed}' that {path} needs:"
                f" ask for a token with scope '{needed}'",
                [(b"www-authenticate", b'Bearer error="insufficient_scope"')],
            )
        return caller.name

    async def _too_large(self, send: Send) -> None:
        await respond(
            send,
            413,
            f"the body is over {self.max_body_bytes} bytes: send fewer records per request",
        )


DISCONNECTED = b"disconnected"  # a sentinel: compared by identity


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None once it passes `limit` bytes (the rest is never read), or
    DISCONNECTED. One chunk (the usual case) is returned as is: no copy."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return DISCONNECTED
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives the buffered body, then what the server sends (a disconnect)."""
    given = False

    async def receive_again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive_again


async def respond(
    send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """A JSON error answer with an id (and the refusal in the server log under it)."""
    error_id = new_error_id()
    logger.info("error %s: %d %s", error_id, status, message)
    await send_json(send, status, error_body(message, error_id), headers or [])


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def fix_advice(detail: Any) -> str | None:
    """'fix records[0].age: <what is wrong>' from pydantic's errors (BentoML's 400 `detail`)."""
    if not isinstance(detail, list) or not detail or not isinstance(detail[0], dict):
        return None
    first = detail[0]
    where = "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in first.get("loc", [])
    ).lstrip(".")
    more = f" (and {len(detail) - 1} more in detail)" if len(detail) > 1 else ""
    return f"fix {where or 'the body'}: {first.get('msg', 'invalid')}{more}"


class DocumentedAuth:
    """A `send` that adds the bearer scheme to BentoML's OpenAPI document, and to each guarded
    route the scope it needs: the docs UI then asks for a token (Authorize) and sends it, and
    a client generator or fuzzer knows the routes are protected."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 200:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            document = with_bearer_auth(json.loads(b"".join(self.chunks)))
            headers = [
                (name, value)
                for name, value in self.start.get("headers", [])
                if name.lower() not in (b"content-length", b"content-type")
            ]
            await send_json(self.send, 200, json.dumps(document).encode(), headers)


def with_bearer_auth(document: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with the bearer scheme and each guarded route's scope."""
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API token (make token); each route needs its scope",
    }
    for path, scope in SCOPE_OF_ROUTE.items():
        for operation in document.get("paths", {}).get(path, {}).values():
            if isinstance(operation, dict):
                operation["security"] = [{"bearerAuth": []}]
                needs = f"Needs a token with the scope `{scope}`."
                operation["description"] = f"{operation.get('description') or ''}\n\n{needs}"
    return document


class ErrorIds:
    """A `send` that passes a 2xx/3xx answer through untouched and holds a 4xx/5xx one until
    its body is complete, then sends it as `{"error": <advice>, "error_id": ..., ...}`: an
    answer that has an id already (the guard's, the service's 503s) is sent as it was; one
    from BentoML or Starlette keeps its `detail` (validation errors: where and what, never the
    input) and gets advice instead of its message, which the server log keeps."""

    def __init__(self, send: Send, scope: Message) -> None:
        self.send = send
        self.scope = scope
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] >= 400:
            self.start = message
            return
        if self.start is None or message["type"] != "http.response.body":
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self._send_error(self.start, b"".join(self.chunks))

    async def _send_error(self, start: Message, original: bytes) -> None:
        status = start["status"]
        try:
            answer = json.loads(original)
        except ValueError:
            answer = None
        if isinstance(answer, dict) and "error_id" in answer:
            body = original
        else:
            error_id = new_error_id()
            detail = answer.get("detail") if isinstance(answer, dict) else None
            kept = {} if detail is None else {"detail": detail}
            advice = (
                fix_advice(detail) or ADVICE.get(status) or ADVICE[500 if status >= 500 else 400]
            )
            log = logger.error if status >= 500 else logger.info
            log(
                "error %s: %s %s answered %d: %s",
                error_id,
                self.scope.get("method"),
                self.scope.get("path"),
                status,
                original[:2000].decode("utf-8", "replace"),
            )
            body = error_body(advice, error_id, **kept)
        headers = [
            (name, value)
            for name, value in start.get("headers", [])
            if name.lower() not in (b"content-length", b"content-type")
        ]
        await send_json(self.send, status, body, headers)
