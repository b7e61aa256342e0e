"""End to end: which accuracy strategy gives the best finalized front for the same wall clock.

For every seed of ``--seeds`` and every strategy of ``--strategies``, the quickstart search
(its network, compression and accelerator spaces, at the dataset's input shape) runs
for ``--minutes`` of wall clock on this machine's cores (local Ray), in a fresh run
folder; then ``--top`` designs of its Pareto front, evenly spaced along it (``--select
spread``, both ends included) or its most accurate (``--select top``), are finalized: retrained
from scratch for ``--final-epochs`` epochs with the same training settings for every
strategy, and measured on the held-out test split. The finalized designs' (test
accuracy, latency, energy) give each run a hypervolume, all runs against one reference
point (accuracy 0, and 1.1 x the largest latency and energy among all finalized
designs), so the figures compare.

Strategies:

* ``trained``: one epoch of training per candidate (``TrainedProxy(epochs=1)``).
* ``trained3``: three epochs, the quickstart's own proxy (not run unless asked).
* ``hyperband``: training up to ``--hyperband-epochs`` epochs under Optuna's
  ``HyperbandPruner`` (reduction factor 3), which stops the learning curves that trail
  (the multi-objective search prunes on accuracy in its ``:fidelity`` twin study).
* ``supernet``: the weight-sharing supernet, trained once inside the budget by the
  first trial that needs it (``--supernet-epochs``), then a slice per candidate.
* ``predictor``: an accuracy predictor fitted on 100 of that supernet's scores, then
  microseconds per candidate.

Every search starts its own local Ray (fresh worker processes, so no strategy inherits
another's trained supernet or compiled models; XLA's persistent compilation cache on
disk is shared, as it is between a user's runs). Each (strategy, seed) part is stored when done in ``data/end_to_end_<dataset>.json``, so a
rerun goes on with the parts missing; run folders are kept under
``data/end_to_end_runs/`` (not versioned). Run it on a quiet machine: the budget is wall
clock.

    .venv/bin/pip install -e ".[bench]"   # moocore, for the hypervolume
    .venv/bin/python experiments/benchmarks/end_to_end.py --dataset digits --minutes 3
    .venv/bin/python experiments/benchmarks/end_to_end.py --dataset mnist --minutes 8 --final-epochs 10
    .venv/bin/python experiments/benchmarks/end_to_end.py --dataset digits --table   # the stored table only
    .venv/bin/python experiments/benchmarks/end_to_end.py --dataset digits --minutes 3 --refinalize --select top
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import ray

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import codesign  # noqa: E402
from codesign.accuracy.datasets import load_dataset  # noqa: E402
from codesign.accuracy.proxies import make_proxy  # noqa: E402
from quickstart import make_experiment  # noqa: E402

try:
    import moocore  # exact hypervolume
except ImportError:  # pragma: no cover - said to the user
    sys.exit('end_to_end.py needs moocore: .venv/bin/pip install -e ".[bench]"')

DATA = Path(__file__).resolve().parent / "data"
STRATEGIES = ("trained", "trained3", "hyperband", "supernet", "predictor")
DEFAULT_STRATEGIES = ("trained", "hyperband", "supernet", "predictor")
#: Maximised objectives are negated for the hypervolume (moocore minimises).
OBJECTIVES = (("accuracy", -1.0), ("latency", 1.0), ("energy", 1.0))


def strategy_settings(strategy: str, args) -> dict:
    """The experiment fields a strategy changes: its proxy, and Hyperband's pruner."""
    if strategy in ("trained", "trained3"):
        return {"proxy": codesign.TrainedProxy(codesign.TrainConfig(epochs=1 if strategy == "trained" else 3))}
    if strategy == "hyperband":
        return {"proxy": codesign.TrainedProxy(codesign.TrainConfig(epochs=args.hyperband_epochs)),
                "pruner": optuna.pruners.HyperbandPruner(min_resource=1, max_resource=args.hyperband_epochs,
                                                         reduction_factor=3)}
    if strategy == "supernet":
        return {"proxy": make_proxy("supernet", epochs=args.supernet_epochs)}
    if strategy == "predictor":
        return {"proxy": make_proxy("predictor", teacher="supernet", teacher_epochs=args.supernet_epochs,
                                    fit_candidates=100)}
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")


def experiment_for(strategy: str, seed: int, args, folder: Path) -> codesign.Experiment:
    """The quickstart experiment at the dataset's input shape, with the strategy's proxy and a wall-clock budget."""
    base = make_experiment(trials=40, folder=str(folder))
    data = load_dataset(args.dataset, seed=seed)
    networks = base.network_space.for_data(data.resolution, data.in_channels, data.num_classes,
                                           f"dataset {data.name!r}")
    return dataclasses.replace(base, name=f"e2e_{strategy}_{seed}", dataset=args.dataset, network_space=networks,
                               trials=None, timeout=60.0 * args.minutes, seed=seed, **strategy_settings(strategy, args))


def run_folder(strategy: str, seed: int, args) -> Path:
    return DATA / "end_to_end_runs" / Path(args.dataset).stem / f"{strategy}_{seed}"


def search_part(strategy: str, seed: int, args) -> dict:
    """One search in a fresh run folder: what it did in its wall-clock budget."""
    folder = run_folder(strategy, seed, args)
    shutil.rmtree(folder, ignore_errors=True)
    experiment = experiment_for(strategy, seed, args, folder)
    started = time.perf_counter()
    try:
        results = codesign.run(experiment, progress=False)
    finally:  # every search starts on fresh Ray workers: none inherits another's supernet or compiled models
        ray.shutdown()
    return {"strategy": strategy, "seed": seed, "minutes": args.minutes, "search_s": time.perf_counter() - started,
            "counts": results.counts(), "front": len(results.pareto_front), "cpus": os.cpu_count()}


def finalize_part(part: dict, args) -> dict:
    """The search's front finalized: ``--top`` designs (``--select``: evenly spaced along the front, or its
    most accurate), retrained for ``--final-epochs`` with the same settings for every strategy."""
    results = codesign.load(str(run_folder(part["strategy"], part["seed"], args)))
    by_trial = {d.number: d for d in results.pareto_front}
    started = time.perf_counter()
    finals = results.finalize(k=args.top, config=codesign.TrainConfig(epochs=args.final_epochs),
                              spread=args.select == "spread")
    designs = []
    for final in finals:
        design = by_trial[final.trial]
        designs.append({"trial": final.trial, "proxy_accuracy": final.proxy_value, "status": final.status,
                        "accuracy": final.test_accuracy, "val_accuracy": final.val_accuracy,
                        "latency": design.metrics["latency"], "energy": design.metrics["energy"]})
    return {**part, "finalize_s": time.perf_counter() - started, "final_epochs": args.final_epochs,
            "select": args.select, "designs": designs}


def points(part: dict) -> np.ndarray:
    """The finalized designs' objectives, minimised (accuracy negated); a failed retraining scores 0."""
    rows = [[sign * (d[name] if d[name] is not None else 0.0) for name, sign in OBJECTIVES] for d in part["designs"]]
    return np.array(rows, dtype=float).reshape(-1, len(OBJECTIVES))


def reference(parts: list[dict]) -> np.ndarray:
    """One reference point for all runs: accuracy 0, 1.1 x the largest latency and energy finalized."""
    every = np.concatenate([points(p) for p in parts]) if parts else np.zeros((0, len(OBJECTIVES)))
    worst = every.max(axis=0) if len(every) else np.ones(len(OBJECTIVES))
    return np.array([0.0] + [1.1 * w for w in worst[1:]])


def hypervolume(part: dict, ref: np.ndarray) -> float:
    inside = [p for p in points(part) if np.all(p < ref)]
    return float(moocore.hypervolume(np.array(inside), ref=ref)) if inside else 0.0


def table(record: dict) -> str:
    parts = list(record["parts"].values())
    if not parts:
        return "no part measured yet"
    ref = reference(parts)
    box = float(np.prod(ref[1:]))  # accuracy spans [0, 1]: the hypervolume as a share of the reference box
    chosen = "evenly spaced along the front" if parts[0].get("select") == "spread" else "most accurate"
    lines = [f"{record['dataset']}: quickstart spaces, {parts[0]['minutes']:g} min per search on "
             f"{parts[0]['cpus']} cores, {len(parts[0]['designs'])} designs ({chosen}) finalized at "
             f"{parts[0]['final_epochs']:g} epochs; hypervolume of (test accuracy, latency, energy) as a share "
             f"of the reference box (accuracy 0, latency {ref[1]:.4g} ms, energy {ref[2]:.4g} uJ)",
             f"{'strategy':<11}{'seed':>5}{'trials':>8}{'front':>7}{'search s':>10}{'final s':>9}"
             f"{'HV':>8}  test accuracy of the finalized (proxy's value)"]
    for part in sorted(parts, key=lambda p: (STRATEGIES.index(p["strategy"]), p["seed"])):
        trials = sum(v for k, v in part["counts"].items() if k != "duplicate")
        accs = ", ".join(f"{d['accuracy'] if d['accuracy'] is not None else float('nan'):.3f}"
                         f" ({d['proxy_accuracy']:.2f})" for d in part["designs"])
        lines.append(f"{part['strategy']:<11}{part['seed']:>5}{trials:>8}{part['front']:>7}{part['search_s']:>10.0f}"
                     f"{part['finalize_s']:>9.0f}{hypervolume(part, ref) / box:>8.4f}  {accs}")
    by_strategy: dict[str, list[float]] = {}
    for part in parts:
        by_strategy.setdefault(part["strategy"], []).append(hypervolume(part, ref) / box)
    lines.append("mean HV: " + ", ".join(f"{s} {np.mean(v):.4f} ({len(v)} seeds)" for s, v in
                                        sorted(by_strategy.items(), key=lambda kv: -np.mean(kv[1]))))
    return "\n".join(lines)


def record_path(dataset: str) -> Path:
    return DATA / f"end_to_end_{Path(dataset).stem}.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--minutes", type=float, default=8.0, help="wall clock per search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--strategies", nargs="+", default=list(DEFAULT_STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--top", type=int, default=5, help="front designs finalized per search")
    parser.add_argument("--select", choices=("spread", "top"), default="spread",
                        help="which designs: evenly spaced along the front (default), or its most accurate")
    parser.add_argument("--final-epochs", type=float, default=10.0)
    parser.add_argument("--hyperband-epochs", type=int, default=9)
    parser.add_argument("--supernet-epochs", type=float, default=20.0)
    parser.add_argument("--table", action="store_true", help="print the stored table, run nothing")
    parser.add_argument("--again", action="store_true", help="measure the parts already stored again")
    parser.add_argument("--refinalize", action="store_true",
                        help="finalize the stored searches again (another --select, --top or --final-epochs)")
    args = parser.parse_args(argv)
    path = record_path(args.dataset)
    record = json.loads(path.read_text()) if path.is_file() else {"dataset": Path(args.dataset).stem, "parts": {}}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if not args.table:
        for seed in args.seeds:
            for strategy in args.strategies:
                key = f"{strategy}/{seed}"
                stored = record["parts"].get(key)
                if stored and args.refinalize:
                    part = finalize_part(stored, args)
                elif stored and not args.again and stored["minutes"] == args.minutes \
                        and stored["final_epochs"] == args.final_epochs and stored.get("select") == args.select:
                    continue
                else:
                    part = finalize_part(search_part(strategy, seed, args), args)
                record["parts"][key] = part
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record, indent=1, sort_keys=True))
                print(f"{key}: {part['counts']} in {part['search_s']:.0f} s, finalized in {part['finalize_s']:.0f} s",
                      file=sys.stderr, flush=True)
    print(table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
