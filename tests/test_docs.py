"""The READMEs and the generated project's docs/ pages say only what is true, so a newcomer can
follow them: in a baked project's README.md and docs/*.md, every relative link opens a file the
project has (or one its pipeline writes) and an existing heading; every `make` command names a
target of the project's Makefile, with variables the Makefile reads, and is run by one of the
template's tests; every `python -m <package> <command>` is a command of its CLI; every source,
test or config file named exists; every params.yaml key named exists. The template's README: its
links open, its `make` commands name targets of the template's Makefile.

Commands are read from inline code and from ```bash blocks (plain ``` blocks are diagrams and
layouts); links from the Markdown outside code.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TEMPLATE, TEMPLATE_PROJECT, bake

FENCED = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", flags=re.M | re.S)
INLINE = re.compile(r"`([^`]+)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", flags=re.M)
TARGET = re.compile(r"[a-z][a-z-]*")
VARIABLE = re.compile(r"([A-Z][A-Z_]*)=\S*")
FILE = re.compile(r"[\w.-]+(?:/[\w.-]+)*\.(?:py|ipynb|ya?ml|toml)")
DOTTED = re.compile(r"[a-z_]+(?:\.[a-z_]+)+")
# How the template's tests run a project's make targets: ("make", "<target>", ...) or
# running_make(project, ["<target>"], ...) for servers.
# The targets of a make command in a test: every one (`"make", "lint", "test-unit"`).
MAKE_IN_TESTS = re.compile(
    r'"make",\s*(?:"--no-print-directory",\s*)?((?:"[a-z-]+",?\s*)+)'
    r'|running_make\(\s*\w+,\s*\[\s*"([a-z-]+)"'
)


@dataclass(frozen=True)
class Page:
    path: Path
    text: str

    def code(self) -> list[str]:
        """Inline code spans and the contents of ```bash blocks, whitespace collapsed."""
        found = [
            body
            for language, body in FENCED.findall(self.text)
            if language.strip() in ("bash", "sh", "shell")
        ]
        prose = FENCED.sub("", self.text)
        found += [" ".join(span.split()) for span in INLINE.findall(prose)]
        return found

    def links(self) -> list[str]:
        prose = INLINE.sub("", FENCED.sub("", self.text))
        return LINK.findall(prose)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lowercase, punctuation dropped, spaces as dashes."""
    plain = INLINE.sub(lambda match: match[1], heading).lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {
        slug(heading) for heading in HEADING.findall(FENCED.sub("", page.read_text()))
    }


def make_commands(code: str) -> Iterator[tuple[list[str], list[str]]]:
    """Each `make ...` in a piece of code: (its targets, the variables set on it)."""
    for line in code.splitlines():
        words = line.split("#", 1)[0].split()
        for index, word in enumerate(words):
            if word != "make":
                continue
            targets, variables = [], []
            for earlier in reversed(words[:index]):  # PORT=8080 make serve
                if not (assignment := VARIABLE.fullmatch(earlier)):
                    break
                variables.append(assignment[1])
            for later in words[index + 1 :]:
                if assignment := VARIABLE.fullmatch(later):
                    variables.append(assignment[1])
                elif TARGET.fullmatch(later):
                    targets.append(later)
                else:
                    break
            yield targets, variables


def makefile_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):(?!=)", makefile.read_text(), flags=re.M))


def makefile_variables(makefile: Path) -> set[str]:
    text = makefile.read_text()
    return set(re.findall(r"\$\(([A-Z][A-Z_]*)\)", text)) | set(
        re.findall(r"^([A-Z][A-Z_]*)\s*[?:]?=", text, flags=re.M)
    )


def check_links(page: Path, root: Path, generated: set[str]) -> list[str]:
    """Relative links that open no file of `root` (nor a pipeline output), or no heading."""
    problems = []
    for link in Page(page, page.read_text()).links():
        if re.match(r"[a-z][a-z+.-]*:", link):
            continue  # https:, mailto:
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        relative = path.relative_to(root.resolve()).as_posix() if target else ""
        if target and not path.exists() and relative not in generated:
            problems.append(f"{link}: no such file")
        elif anchor and path.suffix == ".md" and path.exists():
            if anchor not in anchors(path):
                problems.append(f"{link}: {path.name} has no heading #{anchor}")
    return problems


def dvc_outputs(project: Path) -> set[str]:
    """Every path a dvc.yaml stage writes (the pipeline makes them; a fresh bake lacks them)."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    found = set()
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                found.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    return found


def has_key(params: Any, dotted: str) -> bool:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


# ---------------------------------------------------------------------------------------
# The generated project


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bake(tmp_path_factory.mktemp("docs"))


@pytest.fixture(scope="module")
def pages(project: Path) -> list[Page]:
    found = [project / "README.md", *sorted((project / "docs").glob("*.md"))]
    return [Page(path, path.read_text()) for path in found]


@pytest.fixture(scope="module")
def package(project: Path) -> str:
    [name] = [path.name for path in (project / "src").iterdir() if path.is_dir()]
    return name


def test_the_readme_links_every_docs_page(project: Path) -> None:
    readme = Page(project / "README.md", (project / "README.md").read_text())
    linked = {link.partition("#")[0] for link in readme.links()}
    pages = {f"docs/{path.name}" for path in (project / "docs").glob("*.md")}
    assert pages - linked == set(), "docs pages the README does not link"


def test_relative_links_open_a_file_and_heading(
    project: Path, pages: list[Page]
) -> None:
    generated = dvc_outputs(project)
    problems = [
        f"{page.path.relative_to(project)}: {problem}"
        for page in pages
        for problem in check_links(page.path, project, generated)
    ]
    assert not problems, "\n".join(problems)


def test_make_commands_are_targets_the_template_tests_run(
    project: Path, pages: list[Page]
) -> None:
    targets = makefile_targets(project / "Makefile")
    variables = makefile_variables(project / "Makefile")
    tested = {
        name
        for source in sorted((TEMPLATE / "tests").glob("*.py"))
        for match in MAKE_IN_TESTS.finditer(source.read_text())
        for group in match.groups()
        if group
        for name in re.findall(r"[a-z-]+", group)
    }
    named, problems = set(), []
    for page in pages:
        for code in page.code():
            for command_targets, command_variables in make_commands(code):
                named.update(command_targets)
                where = f"{page.path.relative_to(project)}: `{code}`"
                problems += [
                    f"{where}: no target {name}"
                    for name in command_targets
                    if name not in targets
                ]
                problems += [
                    f"{where}: the Makefile does not read {name}"
                    for name in command_variables
                    if name not in variables
                ]
    assert {"setup", "pipeline", "test"} <= named, "the pages lost the first commands"
    problems += [
        f"make {name}: documented, but no template test runs it"
        for name in sorted(named & targets - tested)
    ]
    assert not problems, "\n".join(problems)


def test_python_commands_are_cli_commands(
    project: Path, pages: list[Page], package: str
) -> None:
    cli = (project / "src" / package / "cli.py").read_text()
    stages = re.search(r"^STAGES = \((.*?)\)", cli, flags=re.M | re.S)
    assert stages, "cli.py has no STAGES"
    commands = {name.replace("_", "-") for name in re.findall(r'"(\w+)"', stages[1])}
    # subparsers made directly, or through build_parser's `command(name, run, help)` helper
    commands |= set(re.findall(r'(?:add_parser|command)\(\s*"([a-z-]+)"', cli))
    problems = []
    for page in pages:
        for code in page.code():
            for named, command in re.findall(r"python -m (\S+) ([a-z][a-z_-]*)", code):
                if named != package or command not in commands:
                    problems.append(f"{page.path.relative_to(project)}: `{code}`")
    assert not problems, "\n".join(problems)


def test_named_files_and_params_keys_exist(
    project: Path, pages: list[Page], package: str
) -> None:
    """A file named in code (`tests/unit/test_lineage.py`, `serving/batching.py`, `dvc.yaml`) is
    a file of the project, as a path from its root or from anywhere inside it; a dotted name
    that starts with a section of params.yaml (`serving.max_batch_size`) is a key of it."""
    files = {
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(project).parts
    }
    params = yaml.safe_load((project / "params.yaml").read_text())
    problems = []
    for page in pages:
        where = page.path.relative_to(project)
        for code in page.code():
            for token in code.split():
                token = token.strip("(),;:'\"")
                if FILE.fullmatch(token):
                    if not any(
                        path == token or path.endswith(f"/{token}") for path in files
                    ):
                        problems.append(f"{where}: no file {token}")
                elif DOTTED.fullmatch(token) and token.split(".")[0] in params:
                    if not has_key(params, token):
                        problems.append(f"{where}: params.yaml has no {token}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------------
# The template's README


def test_template_readme_links_and_make_commands() -> None:
    """It names the template's commands and, in its tests' table, the generated project's."""
    readme = TEMPLATE / "README.md"
    problems = check_links(readme, TEMPLATE, set())
    makefiles = (TEMPLATE / "Makefile", TEMPLATE_PROJECT / "Makefile")
    targets = set().union(*(makefile_targets(makefile) for makefile in makefiles))
    variables = set().union(*(makefile_variables(makefile) for makefile in makefiles))
    for code in Page(readme, readme.read_text()).code():
        for command_targets, command_variables in make_commands(code):
            problems += [
                f"`{code}`: no target {t}" for t in command_targets if t not in targets
            ]
            problems += [
                f"`{code}`: the Makefile does not read {name}"
                for name in command_variables
                if name not in variables
            ]
    assert not problems, "\n".join(problems)
