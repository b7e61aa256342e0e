"""The documentation runs as written: every ```python block of README.md and docs/*.md is executed,
every ```bash block's ``codesign`` command is run, every relative link points at a file that
exists, and the docs stand alone in the repository.

Each python block runs in a fresh namespace with the working directory and ``tempfile``'s folder
set to a temporary folder, so runs it starts (``tempfile.mkdtemp()``, ``runs/<name>``) land there.
The bash blocks run in order, README first, in one temporary folder holding a copy of
``examples/`` (so ``codesign run examples/experiment.py`` makes the ``runs/example`` the later
commands read). Commands the test cannot run are checked instead: a command for a Ray cluster
(``--address``) is parsed; a script (``python experiments/X.py --flag``) must exist and know its
flags; ``make``, ``pip install -e ".[extra]"`` and ``python -m pytest FILE`` must name a target,
an extra and a test file that exist. A search in a block uses the test run's Ray (conftest.py:
2 CPUs, under a temporary folder)."""

import contextlib
import io
import re
import shlex
import shutil
import tempfile
import tomllib
from pathlib import Path

import pytest

from codesign.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def code_blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line number) of every fenced block of ``path``."""
    text = path.read_text()
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def python_blocks() -> list:
    """Every ```python block, as a test parameter named by file and line."""
    return [pytest.param(code, id=f"{path.relative_to(ROOT)}:{line}")
            for path in DOCS for language, code, line in code_blocks(path) if language == "python"]


def test_every_doc_has_python_blocks_and_fences_are_closed():
    for path in DOCS:
        text = path.read_text()
        assert text.count("```") % 2 == 0, f"{path.name}: an unclosed code fence"
        assert all(language for language, _, _ in code_blocks(path)), f"{path.name}: a fence without a language"
    assert len(python_blocks()) >= 10


@pytest.mark.parametrize("code", python_blocks())
def test_python_block_runs(code, ray_session, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    namespace = {"__name__": "__docs__"}
    exec(compile(code, "<doc block>", "exec"), namespace)


def test_relative_links_point_at_files_that_exist():
    for path in DOCS:
        text = path.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve()
            assert resolved.exists(), f"{path.relative_to(ROOT)} links to {target}, which does not exist"
            assert ROOT in resolved.parents or resolved == ROOT, f"{path.name} links outside the repository"
            if anchor and resolved.suffix == ".md":
                assert anchor in headings(resolved), f"{path.relative_to(ROOT)}: no heading #{anchor} in {file}"


def headings(path: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    out = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_docs_stand_alone():
    for path in DOCS:
        text = path.read_text()
        for outside in ("../shared", "shared/", "DESIGN.md", "seeds/", "REFERENCES.md"):
            assert outside not in text, f"{path.relative_to(ROOT)} mentions {outside!r}, which is not in the repository"


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line for line in (shlex.join(shlex.split(raw, comments=True)) for raw in joined.splitlines()) if line]


def check_not_run(command: str, where: str) -> None:
    """What the test cannot run must still point at things that exist."""
    words = shlex.split(command)
    program, args = Path(words[0]).name, words[1:]
    if program == "make":
        targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M)
        assert all(a in targets for a in args), f"{where}: make target of {command!r} not in the Makefile"
    elif program == "pip":
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for arg in args:
            for extra in re.findall(r"\[([\w,]+)\]", arg):
                assert set(extra.split(",")) <= set(extras), f"{where}: no extra [{extra}] in pyproject.toml"
    elif program.startswith("python") and args[:2] == ["-m", "pytest"]:
        files = [a for a in args[2:] if a.endswith(".py")]
        assert files and all((ROOT / f).is_file() for f in files), f"{where}: {command!r} names no existing test"
    elif program.startswith("python"):
        script = ROOT / args[0]
        assert script.is_file(), f"{where}: no script {args[0]}"
        source = script.read_text()
        for flag in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", " ".join(args[1:])):
            assert f'"{flag}"' in source, f"{where}: {args[0]} has no option {flag}"
    elif program == "ray":
        assert args and args[0] == "start", f"{where}: unexpected ray command {command!r}"
    else:
        raise AssertionError(f"{where}: the docs test does not know how to check {command!r}")


def test_shell_blocks_run(ray_session, tmp_path, monkeypatch):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for path in DOCS:
        for language, code, line in code_blocks(path):
            if language != "bash":
                continue
            where = f"{path.relative_to(ROOT)}:{line}"
            for command in shell_commands(code):
                words = shlex.split(command)
                if Path(words[0]).name != "codesign":
                    check_not_run(command, where)
                    continue
                if "--address" in words:  # needs a Ray cluster: the options must parse
                    build_parser().parse_args(words[1:])
                    continue
                err = io.StringIO()
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    try:
                        code_ = main(words[1:])
                    except SystemExit as exit_:  # --version and --help exit through argparse
                        code_ = exit_.code
                assert code_ == 0, f"{where}: {command!r} exited {code_}: {err.getvalue()[-500:]}"
                ran += 1
    assert ran >= 10
