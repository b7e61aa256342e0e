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


#: Words of a command that reads what an earlier command of the docs made (the example run and its exports).
MADE_BY_THE_DOCS = ("runs/", "handover", "trial0")


def shell_chain(reads_runs: bool) -> list[tuple[str, str]]:
    """The docs' ``codesign`` commands, README first, as (where, command): those that read what earlier commands
    made (``reads_runs``, in order, with the commands that make it), or the others."""
    chain = []
    for path in DOCS:
        for language, code, line in code_blocks(path):
            if language != "bash":
                continue
            for command in shell_commands(code):
                makes = command.startswith("codesign run ")
                if makes or any(word in command for word in MADE_BY_THE_DOCS) or not \
                        Path(shlex.split(command)[0]).name == "codesign":
                    if reads_runs:
                        chain.append((f"{path.relative_to(ROOT)}:{line}", command))
                elif not reads_runs:
                    chain.append((f"{path.relative_to(ROOT)}:{line}", command))
    return chain


@pytest.mark.parametrize("reads_runs", [True, False], ids=["the example run and what reads it", "the rest"])
def test_shell_blocks_run(ray_session, tmp_path, monkeypatch, reads_runs):
    """Every command of every bash block: the chain that makes and reads ``runs/example`` in order, and the
    independent commands, as two tests (run side by side by pytest-xdist)."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for where, command in shell_chain(reads_runs):
        words = shlex.split(command)
        if Path(words[0]).name != "codesign":
            check_not_run(command, where)
            continue
        if "--address" in words:  # needs a Ray cluster: the options must parse
            build_parser().parse_args(words[1:])
            continue
        result = run_in_process(words[1:])
        assert result.returncode == 0, f"{where}: {command!r} exited {result.returncode}: {result.stderr[-500:]}"
        ran += 1
    assert ran >= 10
