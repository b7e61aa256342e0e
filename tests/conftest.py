import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")

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
