"""Every ```bash block of README.md and docs/*.md runs as written.

The blocks run in order, README first, in one temporary folder holding a copy of
``examples/`` (so ``codesign run examples/experiment.py`` makes the ``runs/example`` the later
commands read); commands that read nothing an earlier command made run as a second test,
beside the first under pytest-xdist. Commands the test cannot run are checked instead: a
command for a Ray cluster (``--address``) is parsed; a script (``python experiments/X.py
--flag``) must exist and know its flags; ``make``, ``pip install -e ".[extra]"`` and ``python
-m pytest FILE`` must name a target, an extra and a test file that exist. The searches use the
test run's Ray (conftest.py: 2 CPUs, under a temporary folder)."""

import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest

from codesign.cli import build_parser
from test_cli import run_in_process
from test_docs import DOCS, ROOT, code_blocks


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


#: An HTML comment right above a bash block, ``<!-- test budget: --trials 2 -->``: options this test adds to the
#: block's ``codesign run`` commands, so a search the docs show at the user's budget runs smaller here (readers
#: of the rendered page see the block as written; the comment is in the page's source).
BUDGET = re.compile(r"<!--\s*test budget:\s*(.*?)\s*-->\s*\n(?=```bash)")


def docs_budgets() -> dict[str, list[str]]:
    """The options each ``path:line`` block's ``codesign run`` commands get in this test."""
    budgets = {}
    for path in DOCS:
        text = path.read_text()
        for match in BUDGET.finditer(text):
            budgets[f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.end()) + 1}"] = shlex.split(match[1])
    return budgets


#: Words of a command that reads what an earlier command of the docs made (the example run and its exports).
MADE_BY_THE_DOCS = ("runs/", "handover", "trial0")


def runs_locally(command: str) -> bool:
    """A ``codesign run`` the test runs (not one on a Ray cluster, which is only parsed)."""
    return command.startswith("codesign run ") and "--address" not in shlex.split(command)


def chain_of(path: Path) -> str:
    """The chain a document's run-reading commands belong to: its own when it runs a search itself (the
    tutorial), else the README's (whose example run the guide's commands read)."""
    for language, code, _ in code_blocks(path):
        if language == "bash" and any(runs_locally(c) for c in shell_commands(code)):
            return path.name
    return "README.md"


def shell_chain(chain: str | None) -> list[tuple[str, str]]:
    """The docs' commands, README first, as (where, command): those of ``chain`` (a document's name), which make
    a run and read what it made, in order; or (None) the ``codesign`` commands that read nothing made."""
    commands = []
    for path in DOCS:
        for language, code, line in code_blocks(path):
            if language != "bash":
                continue
            for command in shell_commands(code):
                reads = command.startswith("codesign run ") or any(word in command for word in MADE_BY_THE_DOCS) \
                    or Path(shlex.split(command)[0]).name != "codesign"
                if (chain_of(path) == chain) if reads else chain is None:
                    commands.append((f"{path.relative_to(ROOT)}:{line}", command))
    return commands


@pytest.mark.parametrize("chain", ["README.md", "TUTORIAL.md", None],
                         ids=["the example run and what reads it", "the tutorial", "the rest"])
def test_shell_blocks_run(ray_session, tmp_path, monkeypatch, chain):
    """Every command of every bash block: each chain that makes a run and reads it (the README's example run, read
    by the guide too; the tutorial's), in order, and the independent commands, as three tests (side by side
    under pytest-xdist)."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ran, budgets = 0, docs_budgets()
    for where, command in shell_chain(chain):
        words = shlex.split(command)
        if runs_locally(command):
            words += budgets.get(where, [])
        if Path(words[0]).name != "codesign":
            check_not_run(command, where)
            continue
        if "--address" in words:  # needs a Ray cluster: the options must parse
            build_parser().parse_args(words[1:])
            continue
        result = run_in_process(words[1:])
        assert result.returncode == 0, f"{where}: {command!r} exited {result.returncode}: {result.stderr[-500:]}"
        ran += 1
    assert ran >= 5


def test_every_command_is_in_one_test():
    """The three tests share out the docs' commands: none is left out, none runs twice."""
    every = [(f"{path.relative_to(ROOT)}:{line}", command) for path in DOCS
             for language, code, line in code_blocks(path) if language == "bash" for command in shell_commands(code)]
    shared = [item for chain in ("README.md", "TUTORIAL.md", None) for item in shell_chain(chain)]
    assert sorted(shared) == sorted(every)
    assert any("runs/tutorial" in command for _, command in shell_chain("TUTORIAL.md"))
    # a budget comment sits on a block this test runs a search of, and its options parse
    searches = {where: command for where, command in every if runs_locally(command)}
    for where, options in docs_budgets().items():
        assert where in searches, f"{where}: a test budget above a block with no `codesign run`"
        build_parser().parse_args(shlex.split(searches[where])[1:] + options)
