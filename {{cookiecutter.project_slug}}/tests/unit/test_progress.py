"""Progress: a bar on a person's terminal, a line per step start and end everywhere else."""

import io

import pytest

from {{ cookiecutter.package_name }}.progress import step

pytestmark = pytest.mark.unit


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_logs_get_one_line_when_a_step_starts_and_one_when_it_ends() -> None:
    stream = io.StringIO()
    with step("train: search", 6, "fits", stream) as progress:
        for _ in range(6):
            progress.advance()
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train: search: 6 fits"
    assert lines[1].startswith("train: search: done, 6/6 fits in ")
    assert len(lines) == 2


def test_a_failed_step_says_so_and_the_error_goes_on() -> None:
    stream = io.StringIO()
    with pytest.raises(RuntimeError, match="boom"), step("fit", 3, "fits", stream) as progress:
        progress.advance()
        raise RuntimeError("boom")
    assert stream.getvalue().splitlines()[-1].startswith("fit: failed, 1/3 fits in ")


def test_a_terminal_gets_a_live_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    stream = Terminal()
    with step("fit", 4, "fits", stream) as progress:
        for _ in range(4):
            progress.advance()
    output = stream.getvalue()
    assert "\r" in output and "4/4" in output and "100%" in output
    assert "done," not in output


def test_ci_counts_as_a_log_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    stream = Terminal()
    with step("fit", 2, "fits", stream) as progress:
        progress.advance(2)
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines()[-1].startswith("fit: done, 2/2 fits in ")
