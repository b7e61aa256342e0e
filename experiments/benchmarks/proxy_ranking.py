"""How well do the accuracy proxies rank network + compression pairs, and what do they cost?

Draws ``--pairs`` pairs from the default network and compression spaces (bit widths down
to 2, pruning up to 75 %, so accuracies spread), trains each at full fidelity
(``--full-epochs``) on the digits data (or CIFAR-10 with ``--cifar PATH``), and reports,
for every proxy, Kendall's tau and Spearman's rho against the full-training accuracy and
the mean wall time per pair (compilation included: every proxy starts from empty JAX
caches, as a fresh candidate in a search would).

    .venv/bin/python experiments/benchmarks/proxy_ranking.py [--pairs 30] [--full-epochs 30] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np
from scipy.stats import kendalltau, spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codesign.accuracy.datasets import load_dataset  # noqa: E402
from codesign.accuracy.proxies import ZERO_COST, TrainedProxy, ZeroCostProxy  # noqa: E402
from codesign.accuracy.training import TrainConfig  # noqa: E402
from search_spaces.compression import CompressionSpace  # noqa: E402
from search_spaces.network_space import CIFAR_NETWORK_SPACE, DEFAULT_NETWORK_SPACE  # noqa: E402

SPREAD = CompressionSpace(w_bits=(2, 4, 8, 16), a_bits=(4, 8, 16), prune_ratios=(0.0, 0.5, 0.75))


def timed(proxy, spec, policy, data, seed):
    jax.clear_caches()
    started = time.perf_counter()
    result, = proxy.evaluate([(spec, policy)], data, seed)
    return result.score, time.perf_counter() - started


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--full-epochs", type=float, default=30)
    parser.add_argument("--fidelities", type=float, nargs="+", default=[1, 3])
    parser.add_argument("--cifar", help="a cifar-10-batches-py folder (default: the digits data)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    data = load_dataset(args.cifar or "digits", seed=args.seed)
    space = CIFAR_NETWORK_SPACE if args.cifar else DEFAULT_NETWORK_SPACE
    rng = np.random.default_rng(args.seed)
    pairs = []
    for _ in range(args.pairs):
        spec = space.draw(rng)
        pairs.append((spec, SPREAD.draw(rng, spec)))
    proxies = {"full": TrainedProxy(TrainConfig(epochs=args.full_epochs))}
    for epochs in args.fidelities:
        proxies[f"trained@{epochs:g}ep"] = TrainedProxy(TrainConfig(epochs=epochs))
    for name in ZERO_COST:
        proxies[name] = ZeroCostProxy(name)
    scores = {name: [] for name in proxies}
    seconds = {name: [] for name in proxies}
    for i, (spec, policy) in enumerate(pairs):
        for name, proxy in proxies.items():
            score, took = timed(proxy, spec, policy, data, args.seed)
            scores[name].append(np.nan if score is None else score)
            seconds[name].append(took)
        print(f"pair {i + 1}/{len(pairs)}: full accuracy {scores['full'][-1]:.3f} "
              f"({seconds['full'][-1]:.1f} s)", file=sys.stderr, flush=True)

    full = np.array(scores["full"])
    full_time = float(np.mean(seconds["full"]))
    rows = {}
    for name in proxies:
        values = np.array(scores[name], dtype=float)
        ok = np.isfinite(values) & np.isfinite(full)
        tau = kendalltau(values[ok], full[ok]).statistic if name != "full" else 1.0
        rho = spearmanr(values[ok], full[ok]).statistic if name != "full" else 1.0
        mean = float(np.mean(seconds[name]))
        rows[name] = {"kendall_tau": float(tau), "spearman_rho": float(rho), "seconds_per_pair": mean,
                      "fraction_of_full_time": mean / full_time, "failed": int((~ok).sum())}
    cheap = [n for n in rows if n.startswith("trained@")]
    cheapest = min(cheap, key=lambda n: rows[n]["seconds_per_pair"])
    report = {"dataset": data.summary(), "pairs": len(pairs), "full_epochs": args.full_epochs,
              "full_accuracy": {"min": float(np.nanmin(full)), "median": float(np.nanmedian(full)),
                                "max": float(np.nanmax(full))},
              "proxies": rows, "cheapest_trained": cheapest,
              "goal_met": rows[cheapest]["kendall_tau"] >= 0.6 and rows[cheapest]["fraction_of_full_time"] < 0.10}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['dataset']}; {len(pairs)} pairs; full training {args.full_epochs:g} epochs, accuracy "
              f"{report['full_accuracy']['min']:.3f} .. {report['full_accuracy']['max']:.3f}")
        print(f"{'proxy':<16}{'tau':>8}{'rho':>8}{'s/pair':>9}{'% of full':>11}{'failed':>8}")
        for name, row in rows.items():
            print(f"{name:<16}{row['kendall_tau']:>8.3f}{row['spearman_rho']:>8.3f}{row['seconds_per_pair']:>9.2f}"
                  f"{100 * row['fraction_of_full_time']:>10.1f}%{row['failed']:>8}")
        print(f"goal (cheapest trained proxy {cheapest}: tau >= 0.6 at < 10 % of full time): "
              f"{'met' if report['goal_met'] else 'NOT met'}")
    return report


if __name__ == "__main__":
    main()
