"""API tokens (serving/auth.py): created once and kept only as digests, refused when unknown,
revoked or duplicated, compared in constant time, and cheap to check."""

from __future__ import annotations

import hmac
import json
import stat
import time
from pathlib import Path

import pytest

from {{ cookiecutter.package_name }}.cli import main
from {{ cookiecutter.package_name }}.errors import ConfigError
from {{ cookiecutter.package_name }}.serving import auth
from {{ cookiecutter.package_name }}.serving.auth import (
    SCOPES,
    TokenVerifier,
    create_token,
    list_tokens,
    local_token,
    revoke_token,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return tmp_path / "secrets" / "tokens.json"


def verifier(path: Path) -> TokenVerifier:
    checker = TokenVerifier()
    checker.load(path)
    return checker


def test_a_token_is_kept_as_its_digest_in_a_private_file(tokens: Path) -> None:
    token = create_token(tokens, "scoring-app", "predict,explain")

    assert token.startswith(auth.TOKEN_PREFIX) and len(token) > 40
    text = tokens.read_text()
    assert token not in text
    (entry,) = json.loads(text)["tokens"]
    assert entry["name"] == "scoring-app"
    assert entry["scopes"] == ["predict", "explain"]
    assert entry["sha256"] == auth.digest(token)
    assert entry["created"]
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE(tokens.parent.stat().st_mode) == 0o700
    assert [p.name for p in tokens.parent.iterdir()] == ["tokens.json"]  # no temporary left


def test_verify_gives_the_caller_of_a_known_token_and_nothing_else(tokens: Path) -> None:
    first = create_token(tokens, "first", ["predict"])
    second = create_token(tokens, "second", SCOPES)
    checker = verifier(tokens)

    assert checker.verify(first.encode()) == auth.Caller("first", frozenset({"predict"}))
    assert checker.verify(second.encode()) == auth.Caller("second", frozenset(SCOPES))
    for wrong in (b"", first[:-1].encode(), first.encode() + b"x", auth.digest(first).encode()):
        assert checker.verify(wrong) is None


def test_a_duplicate_name_is_refused_and_the_file_left_as_it_was(tokens: Path) -> None:
    create_token(tokens, "app")
    before = tokens.read_text()

    with pytest.raises(ConfigError, match="a token named 'app' exists"):
        create_token(tokens, "app", ["feedback"])

    assert tokens.read_text() == before


@pytest.mark.parametrize("scopes", ["predict,admin", "", "review"])
def test_unknown_scopes_are_refused(tokens: Path, scopes: str) -> None:
    with pytest.raises(ConfigError, match="scope"):
        create_token(tokens, "app", scopes)
    assert not tokens.exists()


def test_revoke_removes_one_token_and_a_running_verifier_notices(
    tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = create_token(tokens, "kept")
    revoked = create_token(tokens, "revoked")
    checker = verifier(tokens)
    assert checker.verify(revoked.encode()) is not None

    revoke_token(tokens, "revoked")
    monkeypatch.setattr(auth, "RECHECK_SECONDS", 0.0)
    checker._next_check = 0.0  # as if RECHECK_SECONDS had passed

    assert checker.verify(revoked.encode()) is None
    assert checker.verify(kept.encode()) is not None
    with pytest.raises(ConfigError, match="no token named 'revoked'"):
        revoke_token(tokens, "revoked")


def test_a_broken_file_keeps_the_tokens_read_before(tokens: Path) -> None:
    token = create_token(tokens, "app")
    checker = verifier(tokens)
    tokens.write_text("{not json")
    checker._next_check = 0.0

    assert checker.verify(token.encode()) is not None


def test_list_never_shows_tokens_or_digests(tokens: Path) -> None:
    token = create_token(tokens, "app", ["predict"])
    listed = list_tokens(tokens)
    assert listed == [{"name": "app", "scopes": ["predict"], "created": listed[0]["created"]}]
    assert token not in json.dumps(listed) and auth.digest(token) not in json.dumps(listed)


def test_a_missing_or_broken_file_stops_the_service_naming_it_and_make_token(
    tokens: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"no API tokens file .*tokens\.json.*make token"):
        verifier(tokens)
    tokens.parent.mkdir()
    tokens.write_text(json.dumps({"tokens": [{"name": "x", "sha256": "00", "scopes": []}]}))
    with pytest.raises(ConfigError, match=r"tokens\.json, entry 0: sha256"):
        verifier(tokens)


def test_every_entry_is_compared_in_constant_time_whichever_matches(
    tokens: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = [create_token(tokens, f"caller-{i}") for i in range(5)]
    checker = verifier(tokens)
    compared: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return compare(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for presented in (made[0], made[-1], "mls_unknown"):
        compared.clear()
        checker.verify(presented.encode())
        assert len(compared) == len(made), presented  # no early exit on a match
        assert all(len(a) == len(b) == 32 for a, b in compared)  # digests, never the token


def test_checking_a_token_costs_microseconds(tokens: Path) -> None:
    """The serving targets leave no room for a slow hash: 20 tokens, 2,000 checks. Measured
    about 4 us a check; the bound is 25 times that, for a busy CI runner."""
    made = [create_token(tokens, f"caller-{i}") for i in range(20)]
    checker = verifier(tokens)
    presented = made[-1].encode()
    started = time.perf_counter()
    for _ in range(2_000):
        checker.verify(presented)
    per_check = (time.perf_counter() - started) / 2_000
    assert per_check < 100e-6, f"{per_check * 1e6:.1f} us a check"


def test_the_local_token_is_made_once_and_replaced_when_lost(tokens: Path) -> None:
    token_file = tokens.parent / "local-token"
    token, created = local_token(tokens, token_file)
    assert created and token_file.read_text().strip() == token
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert verifier(tokens).verify(token.encode()) == auth.Caller("local", frozenset(SCOPES))

    assert local_token(tokens, token_file) == (token, False)

    token_file.unlink()
    replaced, created = local_token(tokens, token_file)
    assert created and replaced != token
    checker = verifier(tokens)
    assert checker.verify(token.encode()) is None  # the lost one no longer works
    assert [entry["name"] for entry in list_tokens(tokens)] == ["local"]


def test_the_token_command_prints_the_token_alone_then_lists_and_revokes(
    workspace: Path,
    tokens: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(auth.ENV_VAR, str(tokens))
    assert main(["token", "--name", "app", "--scopes", "predict,feedback"]) == 0
    printed = capsys.readouterr()
    token = printed.out.strip()
    assert printed.out == token + "\n" and token.startswith(auth.TOKEN_PREFIX)
    assert "shown once" in printed.err and str(tokens) in printed.err
    assert verifier(tokens).verify(token.encode()) == auth.Caller(
        "app", frozenset({"predict", "feedback"})
    )

    assert main(["token", "--name", "app"]) == 1
    assert "a token named 'app' exists" in capsys.readouterr().err

    assert main(["token", "--list"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith("app\tpredict,feedback\t") and token not in listed

    assert main(["token", "--revoke", "app"]) == 0
    assert list_tokens(tokens) == []
