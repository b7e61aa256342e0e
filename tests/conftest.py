import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

CACHE = "CODESIGN_COMPILATION_CACHE"


#: The test runs' XLA compilation cache, kept between runs of this checkout (git ignores it).
KEPT_CACHE = Path(__file__).resolve().parents[1] / ".cache" / "xla"


def pytest_addoption(parser):
    parser.addoption("--fresh-compilation-cache", action="store_true",
                     help="compile into a new temporary cache, as from a fresh clone (default: the checkout's "
                          ".cache/xla, kept between runs)")


def pytest_configure(config):
    """One XLA compilation cache for the whole test run, set before any test module imports codesign, inherited by
    pytest-xdist's workers, the Ray workers and the subprocesses the tests start: the checkout's ``.cache/xla``,
    kept between runs (a program compiled once is loaded by every later run that lowers it the same way; JAX keys
    an entry by the program, its compile options and JAX's version), or with ``--fresh-compilation-cache`` a
    temporary folder removed at the end. A folder given in CODESIGN_COMPILATION_CACHE is used as it is."""
    if hasattr(config, "workerinput") or os.environ.get(CACHE):
        return
    if config.getoption("--fresh-compilation-cache"):
        config._codesign_cache = tempfile.mkdtemp(prefix="codesign-xla-")
        os.environ[CACHE] = config._codesign_cache
    else:
        KEPT_CACHE.mkdir(parents=True, exist_ok=True)
        os.environ[CACHE] = str(KEPT_CACHE)


def pytest_unconfigure(config):
    folder = getattr(config, "_codesign_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    if not hasattr(config, "workerinput") and os.environ.get(CACHE) in (folder, str(KEPT_CACHE)):
        os.environ.pop(CACHE, None)

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load_experiment_module(filename: str):
    """Import a script or module of ``experiments/`` by its file name (the folder is not a package)."""
    spec = importlib.util.spec_from_file_location(Path(filename).stem, EXPERIMENTS / filename)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def experiment_script():
    """:func:`load_experiment_module` as a fixture."""
    return load_experiment_module


@pytest.fixture(scope="session")
def s3_server():
    """One S3-compatible server for the test run (moto's, on 127.0.0.1; tests/servers.py), its endpoint and test
    credentials put in this process's environment before Ray starts, so the Ray workers reach the object store
    as the nodes of a cluster do: from their own environment."""
    from servers import start_s3, stop_s3

    server = start_s3()
    old = {k: os.environ.get(k) for k in server.environment()}
    os.environ.update(server.environment())
    yield server
    stop_s3(server)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """One local Ray (2 CPUs, under a temporary folder and HOME) for every test that runs a search in-process.

    ``codesign.run`` uses an already started Ray. One session for the whole test run: a
    second ``ray.init`` in the same process after a shutdown can time out starting its GCS.
    Its workers have the test object store's credentials in their environment (``s3_server``).
    """
    import ray

    tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    old = {k: os.environ.get(k) for k in ("RAY_TMPDIR", "HOME")}
    os.environ["RAY_TMPDIR"], os.environ["HOME"] = tmp, tmp
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp)
    yield
    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
