"""How the project's own clients (`make simulate URL=...`, the deploy's smoke test) call the
service: with a bearer token from the `API_TOKEN` environment variable (or, on a developer's
machine, the token `make serve` made), a JSON body, and every answer's status and body, 4xx and
5xx included, for the caller to judge."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

from {{ cookiecutter.package_name }}.serving.auth import TOKEN_ENV_VAR

REFUSED_CALLER: Final = (401, 403)
UNREACHABLE: Final = 0  # the status given when nothing answered


def client_token(local_file: Path | None = None) -> str | None:
    """The token to send: `API_TOKEN`, else the content of `local_file` when it exists."""
    token = os.environ.get(TOKEN_ENV_VAR, "").strip()
    if not token and local_file is not None and local_file.is_file():
        token = local_file.read_text().strip()
    return token or None


def authorization(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def request(
    url: str, body: Any = None, *, token: str | None = None, timeout: float = 30.0
) -> tuple[int, str]:
    """(status, body) of a GET, or of a JSON POST when `body` is given, with the token;
    UNREACHABLE and the reason when nothing answers."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", **authorization(token)}
    prepared = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(prepared, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as error:
        return UNREACHABLE, str(getattr(error, "reason", error))


def refused_caller(status: int, token: str | None) -> str | None:
    """What to do when the service refused the caller (401, 403), else None."""
    if status not in REFUSED_CALLER:
        return None
    if token is None:
        problem = f"no token was sent ({TOKEN_ENV_VAR} is not set)"
    elif status == 401:
        problem = "the service does not know the token"
    else:
        problem = "the token lacks the scope this route needs"
    return (
        f"answered {status}: {problem}. Set {TOKEN_ENV_VAR} to a token with the scope, or create"
        " one with `make token NAME=... SCOPES=...`"
    )
