"""What each accuracy proxy costs per candidate at each data size: the figures to choose a proxy by.

For each dataset of ``--datasets`` (digits 8x8x1; MNIST 28x28x1; ``rgb32``, 1,500 generated
32x32x3 images of 5 classes, the shape of a small user set), ``--candidates`` pairs are drawn
from the quickstart spaces fitted to the data, and scored in one process, as a search's
worker scores them (compilation included, the persistent compilation cache off):

* ``trained``: one model per candidate, 1 epoch (``TrainedProxy(TrainConfig(epochs=1))``);
* ``population``: the same candidates trained together on the elastic network
  (``TrainedProxy(..., population=K)``), one call for all;
* ``supernet``: a supernet trained for ``--supernet-epochs`` (its one-off cost), then each
  candidate scored from it (the median of the candidates' times).

    .venv/bin/python experiments/benchmarks/proxy_cost.py [--datasets digits mnist rgb32] [--candidates 4]
        [--supernet-epochs 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("CODESIGN_COMPILATION_CACHE", "off")  # every figure includes its compilation, as on a new machine

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from codesign.accuracy.datasets import from_arrays, load_dataset  # noqa: E402
from codesign.accuracy.proxies import make_proxy  # noqa: E402
from codesign.accuracy.supernet import distinct_pairs  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from population_training import COMPRESSION, NETWORKS  # noqa: E402  (the quickstart's spaces)

jax.config.update("jax_default_prng_impl", "rbg")


def rgb32(seed: int = 0):
    """1,500 32x32x3 images of 5 classes: a colour and a stripe orientation per class, plus noise."""
    rng = np.random.default_rng(seed)
    labels = np.arange(1500) % 5
    rows = np.arange(32)[:, None] + np.zeros((1, 32))
    images = np.empty((1500, 32, 32, 3), np.float32)
    for i, label in enumerate(labels):
        stripes = np.sin((rows if label % 2 else rows.T) * (0.4 + 0.15 * label) + rng.uniform(0, 6.3))
        colour = np.eye(3)[label % 3] * 0.6 + 0.2
        images[i] = 128 + 60 * stripes[..., None] * colour + rng.normal(0, 40, (32, 32, 3))
    order = rng.permutation(1500)
    images, labels = images[order], labels[order]
    return from_arrays(images[:1200], labels[:1200], images[1200:], labels[1200:], name="rgb32")


def dataset(name: str):
    return rgb32() if name == "rgb32" else load_dataset(name, seed=0)


def draw(data, count: int, seed: int = 11):
    space = NETWORKS.for_data(data.resolution, data.in_channels, data.num_classes)
    rng = np.random.default_rng(seed)

    def one(_):
        spec = space.draw(rng)
        return spec, COMPRESSION.draw(rng, spec)
    return space, distinct_pairs(one, count)


def one_by_one(proxy, pairs, data) -> list[float]:
    """Seconds to score each pair on its own, as a search's worker asks."""
    times = []
    for pair in pairs:
        started = time.perf_counter()
        result, = proxy.evaluate([pair], data, seed=0)
        times.append(time.perf_counter() - started)
        assert result.ok, result.reason
    return times


def measure(name: str, candidates: int, supernet_epochs: float) -> list[str]:
    data = dataset(name)
    space, pairs = draw(data, candidates)
    shape = f"{data.resolution}x{data.resolution}x{data.in_channels}"
    rows = []

    trained = make_proxy("trained", epochs=1).bind(space, COMPRESSION)
    rows.append((name, shape, "trained, 1 epoch", 0.0, statistics.median(one_by_one(trained, pairs, data))))

    population = make_proxy("trained", epochs=1, population=len(pairs)).bind(space, COMPRESSION)
    started = time.perf_counter()
    results = population.evaluate(pairs, data, seed=0)
    assert all(r.ok for r in results), [r.reason for r in results]
    rows.append((name, shape, f"population of {len(pairs)}, 1 epoch (compilation shared)", 0.0,
                 (time.perf_counter() - started) / len(pairs)))

    supernet = make_proxy("supernet", epochs=supernet_epochs).bind(space, COMPRESSION)
    started = time.perf_counter()
    supernet.supernet(data)
    one_off = time.perf_counter() - started
    times = one_by_one(supernet, pairs, data)
    rows.append((name, shape, f"supernet ({supernet_epochs:g} epoch(s) once), then each candidate", one_off,
                 statistics.median(times[1:] or times)))
    return [f"| {n} | {s} | {what} | {once:.0f} | {per:.2f} |" for n, s, what, once, per in rows]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist", "rgb32"])
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--supernet-epochs", type=float, default=1.0)
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__}, {os.cpu_count()} CPUs; compilation cache off; {args.candidates} candidates "
          f"per dataset\n")
    print("| data | shape | proxy | one-off s | per candidate s |\n|---|---|---|---|---|")
    for name in args.datasets:
        for line in measure(name, args.candidates, args.supernet_epochs):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
