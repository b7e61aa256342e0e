"""XLA's persistent compilation cache: one per machine, shared by processes and Ray workers, never in the way.

Each case runs in a fresh Python process (the cache is set up when codesign is imported,
before JAX compiles anything), with ``CODESIGN_COMPILATION_CACHE`` pointing where the case
says.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codesign import compilation

#: Evaluates a 300-layer workload (a bucket of 512 that no other test compiles) and prints the cache hits JAX
#: counted and the cost, so a second process can be told apart from the first.
PROGRAM = """
import json, warnings
import jax.monitoring
hits = []
jax.monitoring.register_event_listener(lambda event, **_: hits.append(event) if "cache_hit" in event else None)
import codesign
from cost_models import Accelerator, Workload, conv, evaluate
workload = Workload(tuple(conv(f"l{i}", 8, 8, 8, R=3, padding=1) for i in range(300)))
report = evaluate(workload, Accelerator(dataflow="os"))
import jax
print(json.dumps({"hits": len(hits), "cycles": float(report.total["cycles"]),
                  "folder": jax.config.jax_compilation_cache_dir}))
"""


def run(cache: str) -> tuple[dict, str]:
    env = {**os.environ, compilation.ENVIRONMENT: cache}
    done = subprocess.run([sys.executable, "-c", PROGRAM], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")}


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    first, _ = run(str(tmp_path / "cache"))
    folder = Path(first["folder"])
    assert folder.parent == tmp_path / "cache" and folder.name.startswith("jax-")  # one folder per JAX version
    written = {name: (folder / name).read_bytes() for name in entries(folder) if name.endswith("-cache")}
    assert written and first["hits"] == 0
    second, _ = run(str(tmp_path / "cache"))
    assert second["hits"] >= len(written) and second["cycles"] == first["cycles"]
    # loaded, not compiled and written again (a program that compiled in under JAX's threshold the first time
    # and over it the second, on a busy machine, may be added)
    assert all((folder / name).read_bytes() == data for name, data in written.items())


def test_an_unusable_folder_is_one_warning_and_the_numbers_are_the_same(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    cached, _ = run(str(tmp_path / "cache"))
    broken, stderr = run(str(blocker / "cache"))
    assert broken["folder"] is None and broken["cycles"] == cached["cycles"]
    assert stderr.count("compilation cache") == 1 and "compiling without it" in stderr


def test_off_compiles_without_a_cache(tmp_path, monkeypatch):
    off, _ = run("off")
    assert off["folder"] is None and off["hits"] == 0
    monkeypatch.setenv(compilation.ENVIRONMENT, "off")
    assert compilation.cache_folder() is None


def test_the_default_folder_is_the_users_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation.ENVIRONMENT, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert compilation.cache_folder().parent == tmp_path / "xdg" / "codesign" / "xla"


@pytest.mark.usefixtures("ray_session")
def test_ray_workers_use_the_same_cache():
    import ray

    @ray.remote
    def folder():
        import codesign  # noqa: F401 - importing codesign sets the cache up
        import jax

        return jax.config.jax_compilation_cache_dir

    assert ray.get(folder.remote()) == str(compilation.cache_folder())
