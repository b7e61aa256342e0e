"""How well does the weight-sharing supernet rank candidates, and what does it cost?

Draws ``--pairs`` network + compression pairs from the quickstart network space with a
compression space from 2 to 16 bits, pruned and unpruned (``--seed``; the supernet's
settings were tuned on pairs of another seed), trains each stand-alone at full fidelity
(``--full-epochs``; results kept in an accuracy cache under ``--folder`` so reruns reuse
them), trains the supernet once, scores every pair with it, and reports Kendall's tau and
Spearman's rho against full training, the supernet's training time, the time per
candidate, and the whole cost against training every pair. The 1-epoch trained proxy is
measured beside it in the same run.

    .venv/bin/python experiments/benchmarks/supernet_ranking.py [--pairs 60] [--dataset digits|mnist|PATH]
    .venv/bin/python experiments/benchmarks/supernet_ranking.py --speed-only --dataset PATH [--config JSON]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codesign.accuracy.cache import AccuracyCache  # noqa: E402
from codesign.accuracy.datasets import load_dataset  # noqa: E402
from codesign.accuracy.proxies import TrainedProxy  # noqa: E402
from codesign.accuracy.supernet import SupernetConfig, distinct_pairs, train_supernet  # noqa: E402
from codesign.accuracy.training import TrainConfig  # noqa: E402
from search_spaces.compression import CompressionSpace  # noqa: E402
from search_spaces.network_space import NetworkSpace  # noqa: E402

#: The quickstart's network space, at any resolution.
NETWORKS = NetworkSpace(blocks=("dwsep", "fire", "squeezenext"), stages=(2,), depths=(1, 2), widths=(16, 32),
                        kernels=(3,), stem_kernels=(3, 5), stem_widths=(16,))
#: 2 to 16-bit weights, 4 to 16-bit activations, pruned and unpruned.
COMPRESSION = CompressionSpace(w_bits=(2, 4, 8, 16), a_bits=(4, 8, 16), prune_ratios=(0.0, 0.5))


def networks_at(resolution: int, in_channels: int) -> NetworkSpace:
    return dataclasses.replace(NETWORKS, resolutions=(resolution,), in_channels=in_channels)


def draw_pairs(space: NetworkSpace, compression: CompressionSpace, count: int, seed: int) -> list:
    """``count`` distinct pairs (network, policy), drawn uniformly."""
    rng = np.random.default_rng(seed)

    def draw(_):
        spec = space.draw(rng)
        return spec, compression.draw(rng, spec)
    return distinct_pairs(draw, count)


def full_training(pairs, data, epochs: float, folder: Path, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stand-alone accuracies at full fidelity (cached in ``folder``) and their training seconds."""
    cache = AccuracyCache(folder)
    proxy = TrainedProxy(TrainConfig(epochs=epochs))
    scores, seconds = [], []
    for i, (spec, policy) in enumerate(pairs):
        outcome, = cache.evaluate([(spec, policy)], data, proxy, seed)
        scores.append(np.nan if outcome.score is None else outcome.score)
        seconds.append(outcome.seconds)
        print(f"full training {i + 1}/{len(pairs)}: {scores[-1]:.3f} ({seconds[-1]:.1f} s"
              f"{', cached' if outcome.cached else ''})", file=sys.stderr, flush=True)
    return np.array(scores), np.array(seconds)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--full-epochs", type=float, default=20)
    parser.add_argument("--dataset", default="digits", help="digits, mnist or a cifar-10-batches-py folder")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folder", default=str(ROOT / "runs" / "benchmarks" / "ground_truth"))
    parser.add_argument("--truth-only", action="store_true", help="only the full trainings (to fill the cache)")
    parser.add_argument("--config", help="SupernetConfig fields as JSON, e.g. '{\"epochs\": 30}'")
    parser.add_argument("--trained-epochs", type=float, default=1, help="the trained proxy measured beside (0: none)")
    parser.add_argument("--finetune", type=int, nargs="*", default=[], help="also score with these fine-tuning steps")
    parser.add_argument("--repeat", action="store_true", help="also full training with seed 1 (the noise ceiling)")
    parser.add_argument("--speed-only", action="store_true",
                        help="only the supernet's training and scoring times (no full training, no ranking)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    data = load_dataset(args.dataset, seed=0)
    space = networks_at(data.resolution, data.in_channels)
    pairs = draw_pairs(space, COMPRESSION, args.pairs, args.seed)
    if args.speed_only:
        return speed(space, pairs, data, SupernetConfig(**json.loads(args.config)) if args.config else SupernetConfig())
    full, full_seconds = full_training(pairs, data, args.full_epochs, Path(args.folder))
    # the same full training with another seed: how well full training ranks itself (the ceiling of any proxy)
    repeat, _ = full_training(pairs, data, args.full_epochs, Path(args.folder), seed=1) if args.repeat else (None, None)
    if args.truth_only:
        return {"full": full.tolist()}

    config = SupernetConfig(**json.loads(args.config)) if args.config else SupernetConfig()
    started = time.perf_counter()
    supernet = train_supernet(space, COMPRESSION, data, config, seed=0,
                              log=lambda line: print(line, file=sys.stderr, flush=True))
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    first = supernet.score(pairs[:1], data)  # includes the compilation of calibration and prediction
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    scores = supernet.score(pairs, data)
    per_candidate = (time.perf_counter() - started) / len(pairs)
    assert abs(first[0] - scores[0]) < 1e-9, "scoring is not deterministic"
    finetuned = {}

    for steps in args.finetune:
        tuned = dataclasses.replace(supernet, config=dataclasses.replace(config, finetune_steps=steps))
        tuned.score(pairs[:1], data)  # compilation
        started = time.perf_counter()
        finetuned[steps] = (tuned.score(pairs, data), (time.perf_counter() - started) / len(pairs))
    rows = {"full, seed 1": {**_ranking(repeat, full), "seconds_per_pair": float(np.mean(full_seconds))}} if args.repeat else {}
    rows["supernet"] = _ranking(scores, full)
    rows["supernet"].update({"seconds_per_pair": per_candidate, "first_candidate_seconds": first_seconds})
    for steps, (tuned_scores, seconds) in finetuned.items():
        rows[f"supernet+{steps}ft"] = {**_ranking(tuned_scores, full), "seconds_per_pair": seconds}
    if args.trained_epochs:
        proxy = TrainedProxy(TrainConfig(epochs=args.trained_epochs))
        cheap, cheap_seconds = [], []
        for spec, policy in pairs:
            outcome, = proxy.evaluate([(spec, policy)], data, 0)
            cheap.append(np.nan if outcome.score is None else outcome.score)
            cheap_seconds.append(outcome.seconds)
        rows[f"trained@{args.trained_epochs:g}ep"] = {**_ranking(np.array(cheap), full),
                                                      "seconds_per_pair": float(np.mean(cheap_seconds))}
    whole = train_seconds + first_seconds + per_candidate * (len(pairs) - 1)
    report = {"dataset": data.summary(), "pairs": len(pairs), "seed": args.seed, "full_epochs": args.full_epochs,
              "full_accuracy": [float(np.nanmin(full)), float(np.nanmedian(full)), float(np.nanmax(full))],
              "full_training_seconds": float(np.sum(full_seconds)), "config": config.to_dict(),
              "supernet_training_seconds": train_seconds, "supernet_whole_seconds": whole, "proxies": rows,
              "supernet_scores": [float(np.min(scores)), float(np.max(scores))],
              "supernet_final_loss": supernet.record["final_loss"],
              "goal_met": rows["supernet"]["kendall_tau"] >= 0.8}
    if args.json:
        print(json.dumps(report, indent=2))
        return report
    print(f"{report['dataset']}; {len(pairs)} pairs (seed {args.seed}); full training {args.full_epochs:g} epochs, "
          f"accuracy {report['full_accuracy'][0]:.3f} .. {report['full_accuracy'][2]:.3f}")
    print(f"{'proxy':<16}{'tau':>8}{'rho':>8}{'s/pair':>9}")
    for name, row in rows.items():
        print(f"{name:<16}{row['kendall_tau']:>8.3f}{row['spearman_rho']:>8.3f}{row['seconds_per_pair']:>9.3f}")
    losses = supernet.record["final_loss"]
    print(f"supernet scores {np.min(scores):.3f} .. {np.max(scores):.3f}; last epoch's training loss: largest "
          f"{losses['largest']:.3f}, smallest {losses['smallest']:.3f}, random {losses['random'] or float('nan'):.3f}")
    print(f"supernet: trained in {train_seconds:.0f} s ({supernet.record['steps']} steps), first candidate "
          f"{first_seconds:.1f} s (compilation), then {1000 * per_candidate:.0f} ms per candidate")
    print(f"whole cost: supernet {whole:.0f} s for {len(pairs)} pairs against {np.sum(full_seconds):.0f} s of "
          f"training every pair ({args.full_epochs:g} epochs)")
    print(f"goal (tau >= 0.8): {'met' if report['goal_met'] else 'NOT met'}")
    return report


def speed(space, pairs, data, config: SupernetConfig) -> dict:
    """The supernet's training time and its time per candidate (after the first, which compiles)."""
    started = time.perf_counter()
    supernet = train_supernet(space, COMPRESSION, data, config, seed=0)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    supernet.score(pairs[:1], data)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    supernet.score(pairs, data)
    per_candidate = (time.perf_counter() - started) / len(pairs)
    print(f"{data.summary()}; supernet {config.epochs:g} epochs trained in {train_seconds:.0f} s; first candidate "
          f"{first_seconds:.1f} s (compilation), then {1000 * per_candidate:.0f} ms per candidate ({len(pairs)} pairs)")
    return {"training_seconds": train_seconds, "first_candidate_seconds": first_seconds,
            "seconds_per_candidate": per_candidate}


def _ranking(scores: np.ndarray, full: np.ndarray) -> dict:
    ok = np.isfinite(scores) & np.isfinite(full)
    return {"kendall_tau": float(kendalltau(scores[ok], full[ok]).statistic),
            "spearman_rho": float(spearmanr(scores[ok], full[ok]).statistic), "failed": int((~ok).sum())}


if __name__ == "__main__":
    main()
