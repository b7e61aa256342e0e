"""The tests' tiny spaces and experiments, written once so that identical models compile once per test run.

Every test that needs "some search" takes these: the same networks on the same data give
the same XLA programs, which the run's compilation cache (conftest.py) serves to every
later test, xdist worker and Ray worker. A test that needs another shape says so in its
own module.

- ``NETWORKS``: one stage of a depthwise-separable or fire block, 8 or 16 channels.
- ``ELASTIC_NETWORKS`` / ``COMPRESSION``: two stages of one or two blocks, the spaces of
  the elastic-network tests (population training, the supernet); weights of 4 or 8 bits,
  activations of 8 or 16, half pruning or none.

This module asserts nothing itself: ``test_tiny.py`` checks every size stated here.
- ``ACCELERATORS``: 8 or 16 PEs a side and the dataflows ws, os and flex, everything else fixed
  (12 accelerators).
- :func:`experiment`: a 4-trial joint search of those on the synthetic 8x8 data, scored by
  the instant ``params`` proxy; keyword arguments change any field.
- :func:`experiment_file`: the same as an experiment file for ``codesign run FILE``.
- :func:`wrapped`: a proxy that runs a test's own step in the worker before each evaluation.
"""

from __future__ import annotations

from pathlib import Path

import codesign
from search_spaces.accelerators import AcceleratorSpace
from search_spaces.compression import CompressionSpace
from search_spaces.network_space import NetworkSpace

NETWORKS = NetworkSpace(blocks=("dwsep", "fire"), stages=(1,), depths=(1,), widths=(8, 16), stem_widths=(8,),
                        kernels=(3,), stem_kernels=(3,))
ELASTIC_NETWORKS = NetworkSpace(blocks=("dwsep", "fire"), stages=(2,), depths=(1, 2), widths=(8, 16), kernels=(3,),
                                stem_kernels=(3, 5), stem_widths=(8,))
COMPRESSION = CompressionSpace(w_bits=(4, 8), a_bits=(8, 16), prune_ratios=(0.0, 0.5))
ACCELERATORS = AcceleratorSpace(rows=(8, 16), cols=(8, 16), gb_kib=(64,), rf_bytes=(16,), dram_gbps=(16.0,),
                                mac_bits=(16,), zero_skip=(False,))
CHEAP = codesign.ZeroCostProxy("params")


def experiment(folder: str | Path, **changes) -> codesign.Experiment:
    """A 4-trial joint search of the tiny spaces (uncompressed) on synthetic data with the ``params`` proxy."""
    settings = dict(name="tiny", run_folder=Path(folder), network_space=NETWORKS, compression_space=None,
                    accelerator_space=ACCELERATORS, dataset="synthetic", proxy=CHEAP, trials=4, seed=1)
    settings.update(changes)
    return codesign.Experiment(**settings)


def experiment_file(folder: Path, trials: int) -> Path:
    """``folder/tiny_experiment.py``, defining :func:`experiment` (run folder ``folder/run``) for ``codesign run``."""
    path = Path(folder) / "tiny_experiment.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    f"from tiny import experiment as tiny\n"
                    f"experiment = tiny({str(Path(folder) / 'run')!r}, trials={trials})\n")
    return path


def wrapped(proxy, before):
    """``proxy``, calling ``before()`` in the worker before each evaluation (to act or check inside a Ray worker).
    The class is defined in a function and ``before`` should be too, so Ray's pickle carries them by value."""
    class Wrapped:
        def __init__(self, inner):
            self.inner = inner
            self.name, self.metric, self.pairs_per_task = inner.name, inner.metric, inner.pairs_per_task

        def describe(self) -> dict:
            return self.inner.describe()

        def bind(self, network_space, compression_space, folder=None):
            return Wrapped(self.inner.bind(network_space, compression_space, folder))

        def evaluate(self, pairs, dataset, seed=0, reporters=None):
            before()
            return self.inner.evaluate(pairs, dataset, seed, reporters)
    return Wrapped(proxy)
