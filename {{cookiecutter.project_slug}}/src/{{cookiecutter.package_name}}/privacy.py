"""What the prediction log keeps of each request: schema.yaml's per-column `log:` (keep,
pseudonymise or drop), applied to a record before it reaches the spool or the sink (`LogPolicy`),
and to monitoring's rows so that both sides of a comparison hold what the log holds.

A pseudonym is `<key_id>:<hex>`: HMAC-SHA256 of the value under a secret key, cut to 128 bits
(32 hex digits; collisions among a column's few categories are out of reach, and the log stays
small), with the key's id beside it so that keys can rotate: the key file lists keys, newest
(current) first; older ones stay readable. The same value under the same key gives the same
pseudonym, so a pseudonymised category is still a category for monitoring. Anyone holding the key
can test a guess (a category has few values): the key is a secret, mounted as a file
(`LOG_KEY_FILE`, else `serving.privacy.key_file`), created and rotated by
`python -m {{ cookiecutter.package_name }} log-key`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.schema import ColumnSpec, LogAction, Schema

KEY_ENV_VAR = "LOG_KEY_FILE"
DEFAULT_KEY_FILE = "secrets/log-key"
CREATE_KEY = "python -m {{ cookiecutter.package_name }} log-key (make log-key)"
DIGEST_HEX_DIGITS = 32  # 128 bits of the HMAC
KEY_BYTES = 32
PSEUDONYM = re.compile(r"^([0-9a-f]{8}):[0-9a-f]+$")  # <key_id>:<hex>


@dataclass(frozen=True)
class LogKeys:
    """The pseudonymisation keys by id; `current` signs new records, the others are for reading."""

    current: str
    keys: dict[str, bytes]


def key_id(key: bytes) -> str:
    """A key's public name: the first 8 hex digits of its SHA-256 (reveals nothing of it)."""
    return hashlib.sha256(key).hexdigest()[:8]


def key_file(configured: str | None = None, base_dir: Path | str | None = None) -> Path:
    """The key file: `LOG_KEY_FILE`, else `configured` (serving.privacy.key_file), relative to
    `base_dir` (the project)."""
    path = Path(os.environ.get(KEY_ENV_VAR) or configured or DEFAULT_KEY_FILE)
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def read_keys(path: Path) -> LogKeys:
    """The key file: lines `<key_id> <hex key>`, the current key first."""
    if not path.is_file():
        raise ConfigError(
            f"the pseudonymisation key file {path} does not exist: create it with {CREATE_KEY},"
            f" or point {KEY_ENV_VAR} at the mounted secret"
        )
    keys: dict[str, bytes] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            name, text = line.split()
            key = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not a `<key_id> <hex key>` line") from None
        if name != key_id(key):
            raise ConfigError(f"{path}:{number}: key id {name} does not match its key")
        keys[name] = key
    if not keys:
        raise ConfigError(f"{path} holds no key: create one with {CREATE_KEY}")
    return LogKeys(current=next(iter(keys)), keys=keys)


def rotate_key(path: Path) -> str:
    """Create the key file, or put a new current key at its top (the old ones kept for
    reading); the directory is made owner-only (0700), the file 0600. Returns the new id."""
    if not path.parent.is_dir():  # a directory of its own: owner-only (never chmod another's)
        path.parent.mkdir(parents=True, mode=0o700)
        path.parent.chmod(0o700)  # whatever the umask
    old = path.read_text() if path.is_file() else ""
    key = secrets.token_bytes(KEY_BYTES)
    # a new file of its own (0600 from the start: mkstemp), renamed over the old one
    descriptor, staged = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{key_id(key)} {key.hex()}\n{old}")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staged, path)
    except BaseException:
        Path(staged).unlink(missing_ok=True)
        raise
    return key_id(key)


class LogPolicy:
    """What the log keeps of each column; `apply` costs a dict copy and one HMAC per
    pseudonymised value (microseconds)."""

    def __init__(self, schema: Schema, keys: LogKeys | None = None) -> None:
        self.columns = {column.name: column for column in schema.columns}
        self.actions: dict[str, LogAction] = {c.name: c.log for c in schema.columns}
        self.dropped = frozenset(n for n, a in self.actions.items() if a == "drop")
        self.pseudonymised = {
            n: self.columns[n] for n, a in self.actions.items() if a == "pseudonymise"
        }
        if self.pseudonymised and keys is None:
            raise ConfigError(
                f"schema.yaml pseudonymises {', '.join(self.pseudonymised)} in the log but no key"
                f" was given: create one with {CREATE_KEY}"
            )
        self.keys = keys
        self._cache: dict[tuple[str, str], str] = {}

    @classmethod
    def load(
        cls, schema: Schema, configured: str | None = None, base_dir: Path | str | None = None
    ) -> LogPolicy:
        """The policy of `schema`, with the key file when a column is pseudonymised (a missing
        file is a ConfigError naming it and the command that creates it)."""
        needs_key = any(column.log == "pseudonymise" for column in schema.columns)
        return cls(schema, read_keys(key_file(configured, base_dir)) if needs_key else None)

    def pseudonym(self, column: str, value: Any, key: str | None = None) -> str:
        """`value` of `column` as the log keeps it, under key `key` (default: the current).
        The column's name is signed too: one value in two columns gets two pseudonyms."""
        assert self.keys is not None  # the constructor refused a policy without keys
        name = key or self.keys.current
        text = f"{column}\0{value}".encode()  # a category as text, as requests and files hold it
        digest = hmac.new(self.keys.keys[name], text, hashlib.sha256).hexdigest()
        return f"{name}:{digest[:DIGEST_HEX_DIGITS]}"

    def _signed(self, column: str, value: Any) -> str:
        """`pseudonym` under the current key, remembered for the schema's categories (a
        request's value is one of them once validated: the cache stays that small)."""
        if not isinstance(value, str):
            return self.pseudonym(column, value)
        found = self._cache.get((column, value))
        if found is None:
            found = self.pseudonym(column, value)
            if value in self.pseudonymised[column].categories:
                self._cache[(column, value)] = found
        return found

    def apply(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """What the log keeps of one request row: dropped columns left out, pseudonymised ones
        replaced (a missing value stays missing), the rest as they came."""
        kept = {name: value for name, value in row.items() if name not in self.dropped}
        for name in self.pseudonymised:
            value = kept.get(name)
            if value is not None:
                kept[name] = self._signed(name, value)
        return kept

    def logged_schema(self, schema: Schema) -> Schema:
        """`schema` without the dropped columns: what monitoring can compare."""
        return dataclasses.replace(
            schema, columns=tuple(c for c in schema.columns if c.name not in self.dropped)
        )

    def as_logged(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Monitoring's rows as the log holds them, under the current key: dropped columns
        removed; a pseudonymised column's raw values (the reference) signed, and pseudonyms
        under an older key re-signed, so that one category is one value on both sides."""
        frame = frame.drop(columns=[c for c in self.dropped if c in frame.columns])
        for name, column in self.pseudonymised.items():
            if name in frame.columns:
                self._check_key_ids(name, frame[name])
                current = self._current_pseudonyms(column)
                frame[name] = frame[name].map(current).fillna(frame[name])
        return frame

    def _current_pseudonyms(self, column: ColumnSpec) -> dict[Any, str]:
        """Each category, and its pseudonym under every key, -> its current pseudonym (values
        not found, a category the schema never listed, stay as they are)."""
        assert self.keys is not None
        current = {}
        for category in column.categories:
            now = self.pseudonym(column.name, category)
            current[category] = now
            for name in self.keys.keys:
                current[self.pseudonym(column.name, category, name)] = now
        return current

    def _check_key_ids(self, name: str, values: pd.Series) -> None:
        """Pseudonyms signed by a key the key file lacks cannot be compared: a ConfigError
        (the key file is not the service's, say) rather than a column that seems to drift."""
        assert self.keys is not None
        ids = values.dropna().astype(str).str.extract(PSEUDONYM.pattern, expand=False).dropna()
        unknown = sorted(set(ids) - set(self.keys.keys))
        if unknown:
            raise ConfigError(
                f"the log's {name} is pseudonymised under key(s) {', '.join(unknown)}, which the"
                f" key file ({KEY_ENV_VAR} or serving.privacy.key_file) lacks: use the key file"
                " the service signs with"
            )


def propose_log(
    schema: Schema,
    table: pd.DataFrame,
    sensitive: Iterable[str],
    measured_only: Iterable[str],
) -> tuple[Schema, dict[str, str]]:
    """`make schema`'s proposal of what the log keeps of each column, and why, for the reviewer:
    a column that is not a model input and whose every value differs (an identifier) is
    dropped; a sensitive attribute that is not a model input is pseudonymised when a category
    (fairness can still compare its groups) and dropped when a number; everything else is kept
    (the log must show what was decided on)."""
    sensitive, measured_only = set(sensitive), set(measured_only)
    columns, reasons = [], {}
    for column in schema.columns:
        present = table[column.name].dropna()
        action: LogAction = "keep"
        reason = "a model input: the log keeps what was decided on"
        distinct = len(present) > 1 and present.nunique() == len(present)
        if distinct and column.name in measured_only:  # a model input is kept, even if unique
            action, reason = "drop", "every value differs: an identifier the log need not keep"
        elif column.name in sensitive and column.name in measured_only:
            if column.type == "category":
                action = "pseudonymise"
                reason = "sensitive, not a model input: groups stay comparable, values unread"
            else:
                action = "drop"
                reason = "sensitive, not a model input, a number: fairness monitoring loses it"
        elif column.name in measured_only:
            reason = "not a model input: keep only if monitoring needs it"
        elif column.name in sensitive:
            reason = "sensitive but a model input: the log keeps what was decided on"
        columns.append(dataclasses.replace(column, log=action))
        reasons[column.name] = reason
    return dataclasses.replace(schema, columns=tuple(columns)), reasons
