"""Where the log and the spool are: params, or the environment (for containers)."""

from __future__ import annotations

import os
from pathlib import Path

from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.io import resolve, source_kind

from .directory import DirectorySink
from .sink import PredictionSink
from .spool import Spool
from .sql import SqlSink

ENV_VAR = "PREDICTION_LOG"
# A file holding the location: Kubernetes mounts a Secret (a database URL with its password)
# as a file, never as an environment value. PREDICTION_LOG wins when both are set.
FILE_ENV_VAR = "PREDICTION_LOG_FILE"
SPOOL_ENV_VAR = "PREDICTION_SPOOL"
# The spool's byte limit (none unless set): the Deployment sets it below its spool volume's
# size, so a full spool answers 503 instead of the volume's eviction taking the pod.
SPOOL_MAX_BYTES_ENV_VAR = "PREDICTION_SPOOL_MAX_BYTES"


def open_sink(target: str | None = None, base_dir: Path | str | None = None) -> PredictionSink:
    """The sink for `target` (a directory or a database URL); PREDICTION_LOG, else the content
    of the file PREDICTION_LOG_FILE names, overrides it.

    A relative `target` (directory or `sqlite:///relative.db`) is taken relative to `base_dir`,
    the project (or bento) directory, not to wherever the server happens to run; an override
    is used as given.
    """
    target = _located(target, ENV_VAR, "serving.prediction_log", base_dir, FILE_ENV_VAR)
    if not target:
        raise ValueError(f"no prediction log configured: set serving.prediction_log or {ENV_VAR}")
    return SqlSink(target) if source_kind(target) == "database" else DirectorySink(target)


def open_spool(target: str | None = None, base_dir: Path | str | None = None) -> Spool:
    """The spool directory `target`; PREDICTION_SPOOL overrides it (taken as open_sink does)."""
    target = _located(target, SPOOL_ENV_VAR, "serving.prediction_spool", base_dir)
    if not target or source_kind(target) != "file":
        raise ValueError(
            f"serving.prediction_spool (or {SPOOL_ENV_VAR}) must be a local directory, got"
            f" {target!r}"
        )
    return Spool(target, max_bytes=_spool_max_bytes())


def _spool_max_bytes() -> int | None:
    value = os.environ.get(SPOOL_MAX_BYTES_ENV_VAR, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1024:
        raise ConfigError(f"{SPOOL_MAX_BYTES_ENV_VAR} must be a number of bytes, at least 1024")
    return int(value)


def _located(
    target: str | None,
    env_var: str,
    key: str,
    base_dir: Path | str | None,
    file_env_var: str | None = None,
) -> str | None:
    override = os.environ.get(env_var)
    if override:
        return resolve(override, key=env_var)
    named = os.environ.get(file_env_var) if file_env_var else None
    if file_env_var and named:
        try:
            content = Path(named).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(
                f"{file_env_var} names a file that cannot be read ({error.strerror})"
            ) from None
        if not content:
            raise ConfigError(f"{file_env_var} names an empty file")
        return resolve(content, key=file_env_var)
    if target:
        target = resolve(target, key=key)
        if base_dir is not None:
            target = _anchored(target, Path(base_dir))
    return target


def _anchored(target: str, base_dir: Path) -> str:
    if source_kind(target) == "file":
        return str(base_dir / target)
    sqlite = "sqlite:///"
    if (
        target.startswith(sqlite)
        and not target.startswith(sqlite + "/")
        and target != sqlite + ":memory:"
    ):
        return sqlite + str(base_dir / target.removeprefix(sqlite))
    return target
