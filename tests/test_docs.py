"""The documentation runs as written: every ```python block of README.md and docs/*.md is executed,
every relative link points at a file that exists, and the docs stand alone in the repository
(test_docs_commands.py runs every ```bash block).

Each python block runs in a fresh namespace with the working directory and ``tempfile``'s folder
set to a temporary folder, so runs it starts (``tempfile.mkdtemp()``, ``runs/<name>``) land there.
A search in a block uses the test run's Ray (conftest.py: 2 CPUs, under a temporary folder)."""

import re
import tempfile
from pathlib import Path

import pytest


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
