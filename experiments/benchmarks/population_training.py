"""Candidates trained per minute: population training on the elastic network against one model per candidate.

Draws ``--pairs`` network + compression pairs from the quickstart spaces (``--seed``) and
trains the same pairs at each fidelity of ``--epochs`` two ways, in one run:

* **per candidate** (``TrainedProxy()``, today's default): each pair builds and compiles
  its own model, then trains;
* **population** (``TrainedProxy(population=K)``): all pairs go through the elastic
  network of the spaces, one compiled train step for every candidate. Its one-off
  compilation (per space and run length) is measured apart, on one extra pair.

It prints candidates per minute, the speed-up, and the mean absolute difference of the
two ways' accuracies (they agree in distribution, not bit for bit). With ``--vmap`` it
also times one vmapped train step over K candidates against K calls of the compiled step.

    .venv/bin/python experiments/benchmarks/population_training.py [--pairs 8] [--epochs 1 2 4] [--vmap]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codesign.accuracy.datasets import load_dataset  # noqa: E402
from codesign.accuracy.population import ElasticRun, _programs, train_population  # noqa: E402
from codesign.accuracy.proxies import elastic_space  # noqa: E402
from codesign.accuracy.training import TrainConfig, run_length, train  # noqa: E402
from search_spaces.compression import CompressionSpace  # noqa: E402
from search_spaces.network_space import NetworkSpace  # noqa: E402

jax.config.update("jax_default_prng_impl", "rbg")

#: The quickstart's spaces.
NETWORKS = NetworkSpace(blocks=("dwsep", "fire", "squeezenext"), stages=(2,), depths=(1, 2), widths=(16, 32),
                        kernels=(3,), stem_kernels=(3, 5), stem_widths=(16,))
COMPRESSION = CompressionSpace(w_bits=(4, 8, 16), a_bits=(8, 16), prune_ratios=(0.0, 0.5))


def draw_pairs(count: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        spec = NETWORKS.draw(rng)
        pairs.append((spec, COMPRESSION.draw(rng, spec)))
    return pairs


def per_candidate(pairs, data, config) -> tuple[float, list[float]]:
    started = time.perf_counter()
    accuracies = [train(spec, policy, data, config, seed=0).score for spec, policy in pairs]
    return time.perf_counter() - started, accuracies


def population(space, pairs, data, config) -> tuple[float, list[float]]:
    started = time.perf_counter()
    outcomes = train_population(space, pairs, data, config, seed=0)
    return time.perf_counter() - started, [o.score for o in outcomes]


def vmapped_step(space, pairs, data, config) -> tuple[float, float]:
    """Milliseconds per candidate-step: one vmapped call over all pairs, and one compiled call per pair."""
    _, total = run_length(data, config.batch_size, config.epochs)
    programs = _programs(space, config, total)
    runs = [ElasticRun(space, programs, spec, policy, seed=0) for spec, policy in pairs]
    x, y = data.x_train[:config.batch_size], data.y_train[:config.batch_size]
    stacked = [jax.tree_util.tree_map(lambda *leaves: np.stack(leaves), *[getattr(r, f) for r in runs])
               for f in ("params", "stats", "opt_state", "encoding")]
    step = jax.jit(jax.vmap(programs["train_step"], in_axes=(0, 0, 0, 0, None, None)))
    jax.block_until_ready(step(*stacked, x, y))
    repeats = 10
    started = time.perf_counter()
    for _ in range(repeats):
        out = step(*stacked, x, y)
    jax.block_until_ready(out)
    vmapped = (time.perf_counter() - started) / repeats / len(runs) * 1e3
    for run in runs:
        jax.block_until_ready(run.step(x, y))
    started = time.perf_counter()
    for _ in range(repeats):
        for run in runs:
            loss = run.step(x, y)
    jax.block_until_ready(loss)
    looped = (time.perf_counter() - started) / repeats / len(runs) * 1e3
    return vmapped, looped


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--epochs", type=float, nargs="+", default=[1, 2, 4])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--vmap", action="store_true", help="also time a vmapped step against the compiled step")
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset, seed=0)
    space = elastic_space(NETWORKS, COMPRESSION, data.resolution)
    pairs = draw_pairs(args.pairs + 1, args.seed)
    warmup, pairs = pairs[:1], pairs[1:]
    print(f"{args.pairs} quickstart pairs, {args.dataset}, 2 to 16-bit, pruned and unpruned; "
          f"{jax.device_count()} {jax.default_backend()} device(s)")
    print(f"{'epochs':>6} {'per-candidate':>14} {'population':>11} {'speed-up':>8} {'compile':>8} {'|acc diff|':>10}")
    rows = []
    for epochs in args.epochs:
        config = TrainConfig(epochs=epochs)
        compile_s, _ = population(space, warmup, data, config)  # the space's one-off compilation (+1 pair)
        pop_s, pop_acc = population(space, pairs, data, config)
        alone_s, alone_acc = per_candidate(pairs, data, config)
        row = {"epochs": epochs, "per_candidate_per_min": 60 * len(pairs) / alone_s,
               "population_per_min": 60 * len(pairs) / pop_s, "compile_s": compile_s,
               "mean_abs_accuracy_difference": float(np.mean(np.abs(np.array(pop_acc) - np.array(alone_acc))))}
        row["speed_up"] = row["population_per_min"] / row["per_candidate_per_min"]
        rows.append(row)
        print(f"{epochs:>6g} {row['per_candidate_per_min']:>10.1f}/min {row['population_per_min']:>7.1f}/min "
              f"{row['speed_up']:>7.2f}x {compile_s:>7.1f}s {row['mean_abs_accuracy_difference']:>10.3f}", flush=True)
    result = {"rows": rows}
    if args.vmap:
        vmapped, looped = vmapped_step(space, pairs, data, TrainConfig(epochs=1))
        result.update(vmapped_ms=vmapped, looped_ms=looped)
        print(f"one train step per candidate: {looped:.1f} ms as one compiled call each, {vmapped:.1f} ms in one "
              f"vmapped call over {len(pairs)}")
    return result


if __name__ == "__main__":
    main()
