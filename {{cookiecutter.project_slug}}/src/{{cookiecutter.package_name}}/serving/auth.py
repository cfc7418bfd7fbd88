"""Who may call the service: API tokens, each with a name and scopes.

A token (`mls_` and 43 random URL-safe characters) is shown once, when `make token` creates it.
The tokens file keeps only its SHA-256 digest, with the name that callers are recorded under,
its scopes and when it was created:

    {"tokens": [{"name": "app", "sha256": "<hex>", "scopes": ["predict"], "created": "<ISO>"}]}

Scopes: `predict` (/predict), `explain` (/explain), `feedback` (/feedback), `simulate`
(/predict_simulated, for `make simulate`). The file is `API_TOKENS_FILE` when set (Kubernetes
mounts the Secret as a file), else `serving.auth.tokens_file` relative to the project (or the
bento's directory). It is written 0600 in a 0700 directory, replaced atomically, and the service
reads it again when it changes (a revoked token stops working within RECHECK_SECONDS, no
restart). A token is random, so a plain SHA-256 suffices (no password hashing); the service
compares digests with `hmac.compare_digest` against every entry, whether or not one matched.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from {{ cookiecutter.package_name }}.errors import ConfigError

logger = logging.getLogger("bentoml")

SCOPES = ("predict", "explain", "feedback", "simulate")
DEFAULT_SCOPES = ("predict", "explain", "feedback")
TOKEN_PREFIX = "mls_"  # recognisable in a leaked file or a secret scanner's rule
ENV_VAR = "API_TOKENS_FILE"  # a file of digests (the service); clients send API_TOKEN's token
TOKEN_ENV_VAR = "API_TOKEN"  # where the project's clients (serving/client.py) find theirs
LOCAL_NAME = "local"  # `make serve`'s own token, all scopes, kept in LOCAL_TOKEN_FILE
LOCAL_TOKEN_FILE = Path("secrets/local-token")
RECHECK_SECONDS = 5.0  # how often the service looks whether the tokens file changed


@dataclass(frozen=True)
class Caller:
    """A verified token: its name (recorded with predictions and labels) and its scopes."""

    name: str
    scopes: frozenset[str]


def digest(token: str | bytes) -> str:
    """The hex SHA-256 of a token, as the tokens file stores it."""
    return hashlib.sha256(token.encode() if isinstance(token, str) else token).hexdigest()


def tokens_file(configured: str, base_dir: Path | str = ".") -> Path:
    """The tokens file: API_TOKENS_FILE, else `configured` (serving.auth.tokens_file) relative
    to `base_dir`."""
    path = Path(os.environ.get(ENV_VAR) or configured)
    return path if path.is_absolute() else Path(base_dir) / path


def missing_file_message(path: Path) -> str:
    return (
        f"no API tokens file {path} (API_TOKENS_FILE or serving.auth.tokens_file): create a"
        " token with `make token NAME=<caller> SCOPES=predict,explain,feedback`"
        " (`make serve` creates a local one)"
    )


def read_entries(path: Path) -> list[dict[str, Any]]:
    """The file's entries, checked; ConfigError naming the file when it cannot be used."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(missing_file_message(path)) from None
    except (OSError, ValueError) as error:
        raise ConfigError(f"API tokens file {path} cannot be read: {error}") from None
    entries = raw.get("tokens") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"API tokens file {path}: expected" + ' {"tokens": [...]}')
    for number, entry in enumerate(entries):
        problem = _entry_problem(entry)
        if problem:
            raise ConfigError(f"API tokens file {path}, entry {number}: {problem}")
    return entries


def _entry_problem(entry: Any) -> str | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        return "needs a name"
    sha = entry.get("sha256")
    if not isinstance(sha, str) or len(sha) != 64 or not all(c in "0123456789abcdef" for c in sha):
        return "sha256 must be 64 lowercase hex digits"
    scopes = entry.get("scopes")
    if not isinstance(scopes, list) or not set(scopes) <= set(SCOPES):
        return f"scopes must be a list of {', '.join(SCOPES)}"
    return None


def parse_scopes(text: str | Iterable[str]) -> list[str]:
    """`predict,explain` (or a list) as checked scopes, in SCOPES' order."""
    wanted = {s.strip() for s in (text.split(",") if isinstance(text, str) else text)} - {""}
    unknown = sorted(wanted - set(SCOPES))
    if unknown or not wanted:
        raise ConfigError(
            f"unknown scope(s) {', '.join(unknown) or '(none given)'}: choose from"
            f" {', '.join(SCOPES)}"
        )
    return [scope for scope in SCOPES if scope in wanted]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[list[dict[str, Any]]]:
    """The file's entries (none if it does not exist yet), to change in place: written back
    atomically, 0600, while an exclusive lock keeps a concurrent `make token` out."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = os.open(path.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        entries = read_entries(path) if path.exists() else []
        yield entries
        _write_private(path, json.dumps({"tokens": entries}, indent=2) + "\n")
    finally:
        os.close(lock)  # releases the lock


def _write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically, readable by its owner only."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
    try:
        with os.fdopen(handle, "w") as output:
            output.write(text)
            output.flush()
            os.fsync(output.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def create_token(path: Path, name: str, scopes: str | Iterable[str] = DEFAULT_SCOPES) -> str:
    """A new token for `name` (refused if the name exists), its digest added to `path`."""
    name = name.strip()
    if not name or len(name) > 100 or any(c.isspace() for c in name):
        raise ConfigError(f"token name {name!r}: 1 to 100 characters, no spaces")
    checked = parse_scopes(scopes)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with _locked(path) as entries:
        if any(entry["name"] == name for entry in entries):
            raise ConfigError(
                f"a token named '{name}' exists in {path}: revoke it first (python -m"
                f" {{ cookiecutter.package_name }} token --revoke {name}) or choose another name"
            )
        created = datetime.now(UTC).isoformat(timespec="seconds")
        entries.append(
            {"name": name, "sha256": digest(token), "scopes": checked, "created": created}
        )
    return token


def revoke_token(path: Path, name: str) -> None:
    with _locked(path) as entries:
        kept = [entry for entry in entries if entry["name"] != name]
        if len(kept) == len(entries):
            raise ConfigError(f"no token named '{name}' in {path}")
        entries[:] = kept


def list_tokens(path: Path) -> list[dict[str, Any]]:
    """Each token's name, scopes and creation time (never its digest)."""
    return [
        {key: entry.get(key) for key in ("name", "scopes", "created")}
        for entry in read_entries(path)
    ]


def local_token(path: Path, token_file: Path = LOCAL_TOKEN_FILE) -> tuple[str, bool]:
    """`make serve`'s token: the one in `token_file` while `path` knows it; else a new one
    named `local` with every scope (replacing a `local` entry whose token was lost), written
    to `token_file` (0600). Returns the token and whether it was created."""
    if token_file.is_file() and path.is_file():
        token = token_file.read_text().strip()
        if any(entry["sha256"] == digest(token) for entry in read_entries(path)):
            return token, False
    if path.is_file() and any(entry["name"] == LOCAL_NAME for entry in read_entries(path)):
        revoke_token(path, LOCAL_NAME)
    token = create_token(path, LOCAL_NAME, SCOPES)
    token_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write_private(token_file, token + "\n")
    return token, True


class TokenVerifier:
    """The service's view of the tokens file: `verify` maps a presented token to its Caller.
    `load(path)` reads the file (ConfigError when it is missing or broken: the service does not
    start); afterwards a changed file is read again, at most every RECHECK_SECONDS, and a
    broken one keeps the tokens last read (and says so in the log)."""

    def __init__(self) -> None:
        self.path = Path()
        self._entries: list[tuple[bytes, Caller]] = []
        self._version: tuple[int, int, int] | None = None  # (inode, size, mtime) last read
        self._next_check = 0.0
        self._lock = threading.Lock()

    def load(self, path: Path | None = None) -> None:
        """Read `path` (and watch it from now on), or the file read before."""
        self.path = path or self.path
        entries = read_entries(self.path)
        self._version = self._stat()
        self._entries = [
            (bytes.fromhex(entry["sha256"]), Caller(entry["name"], frozenset(entry["scopes"])))
            for entry in entries
        ]
        self._next_check = time.monotonic() + RECHECK_SECONDS

    @property
    def loaded(self) -> bool:
        return self._version is not None

    def verify(self, token: bytes) -> Caller | None:
        """The token's caller, or None. Every entry is compared in constant time, so the time
        taken says nothing about which entry, or how much of a digest, matched."""
        if time.monotonic() >= self._next_check:
            self._refresh()
        presented = hashlib.sha256(token).digest()
        found = None
        for known, caller in self._entries:
            if hmac.compare_digest(presented, known):
                found = caller
        return found

    def _stat(self) -> tuple[int, int, int]:
        status = self.path.stat()
        return (status.st_ino, status.st_size, status.st_mtime_ns)

    def _refresh(self) -> None:
        with self._lock:
            if time.monotonic() < self._next_check:
                return  # another thread has just checked
            self._next_check = time.monotonic() + RECHECK_SECONDS
            try:
                if self._stat() != self._version:
                    self.load()
                    logger.info("API tokens file %s read again: %d tokens", self.path, len(self))
            except (OSError, ConfigError) as error:
                logger.error(
                    "API tokens file %s: %s; keeping the tokens read before", self.path, error
                )

    def __len__(self) -> int:
        return len(self._entries)
