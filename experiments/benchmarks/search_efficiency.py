"""Search efficiency: hypervolume after N trials for TPE, NSGA-II, random search and GPSampler,
and the loop's overhead per trial outside the accuracy proxy.

Every sampler runs the same experiment (the quickstart spaces, joint mode, objectives
accuracy / latency / energy) with the same seeds. The accuracy proxy is a cheap one
(``--proxy params``: the compressed model's weight count, maximised, standing in for
accuracy; or any zero-cost proxy), so the loop is what is measured. Hypervolume is
computed on the normalised objectives (accuracy flipped to a loss) against the worst
point seen across all runs plus 10 %.

Overhead per trial: sampling (ask + the three spaces), the Ray round trip minus the
proxy's own time (cost model, cache, transfer), and the tell (constraints, user
attributes, artifacts). The part of the round trip where the finished result waited
while the driver sampled and told other trials ("queued") is those trials' own
overhead, so it is printed apart and not counted twice. It is printed beside Optuna's own floor measured in the same
run: a bare ask, the same suggestions as the run's trials (same distributions, in the
same order) and a tell of the same values, with no other work, for the same sampler on
the same storage (and in memory); and beside an empty Ray task's round trip.
Goal: at most twice the floor on the same storage.

    .venv/bin/pip install -e ".[bench]"   # moocore, for the hypervolume
    .venv/bin/python experiments/benchmarks/search_efficiency.py [--trials 60] [--seeds 0 1 2]
        [--samplers tpe nsga2 random gp] [--checkpoints 50 100 200]
    # gp (Optuna's GPSampler) needs torch: .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

try:
    import moocore  # exact hypervolume
except ImportError:  # pragma: no cover - an optional extra
    sys.exit('search_efficiency.py needs moocore: .venv/bin/pip install -e ".[bench]"')

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402

import codesign  # noqa: E402
from codesign.storage import make_storage  # noqa: E402
from quickstart import make_experiment  # noqa: E402


def storage_url(storage: str, folder: Path) -> str | None:
    """``journal`` (the run folder's study.log, codesign's default) or ``sqlite`` (a study.db in the run folder)."""
    return f"sqlite:///{folder.resolve()}/study.db" if storage == "sqlite" else None


def run_one(sampler: str, seed: int, trials: int, proxy: str, folder: Path, storage: str):
    experiment = dataclasses.replace(
        make_experiment(trials, str(folder)), name=f"{sampler}-{seed}", sampler=sampler, seed=seed,
        proxy=codesign.ZeroCostProxy(proxy), save_weights=False,
        storage=storage_url(storage, folder))
    started = time.perf_counter()
    results = codesign.run(experiment, progress=False)
    wall = time.perf_counter() - started
    feasible = [d for d in results.designs if d.feasible]
    quality = results.quality_metric  # the zero-cost score, named after its proxy
    points = np.array([[-d.metrics[quality], d.metrics["latency"], d.metrics["energy"]]
                       for d in feasible]).reshape(-1, 3)
    return (points, np.asarray([d.number for d in feasible])), results.timings, wall, results.study.trials


def suggest_like(trial: optuna.Trial, distributions: dict) -> None:
    """The same suggestions as a recorded trial: same names, distributions and order."""
    for name, dist in distributions.items():
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            trial.suggest_categorical(name, dist.choices)
        elif isinstance(dist, optuna.distributions.IntDistribution):
            trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
        else:
            trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def optuna_floor(sampler: str, seed: int, recorded: list, folder: Path, storage: str | None) -> list[float]:
    """Seconds per trial of plain Optuna replaying a run: ask, the same suggestions, tell the same values."""
    experiment = dataclasses.replace(make_experiment(len(recorded), str(folder)), sampler=sampler, seed=seed)
    folder.mkdir(parents=True, exist_ok=True)
    url = {"memory": None, "sqlite": f"sqlite:///{(folder / 'floor.db').resolve()}",
           "journal": f"journal:///{(folder / 'floor.log').resolve()}"}[storage]
    study = optuna.create_study(study_name="floor", directions=experiment.directions, sampler=experiment.make_sampler(),
                                storage=None if url is None else make_storage(url))
    seconds = []
    for frozen in recorded:
        started = time.perf_counter()
        trial = study.ask()
        suggest_like(trial, frozen.distributions)
        if frozen.state == optuna.trial.TrialState.COMPLETE:
            study.tell(trial, frozen.values)
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        seconds.append(time.perf_counter() - started)
    return seconds


def ray_roundtrip(samples: int = 50) -> float:
    """Median seconds of an empty Ray task's round trip (Ray started the way a run starts it)."""
    from codesign.cluster import start_ray

    ray = start_ray(None)
    empty = ray.remote(num_cpus=1)(lambda: None)
    ray.get(empty.remote())
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        ray.get(empty.remote())
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--samplers", nargs="+", default=["tpe", "nsga2", "random"],
                        help="tpe, nsga2, random, gp (Optuna's GPSampler; needs torch)")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=None,
                        help="also print the hypervolume after these many trials (default: --trials only)")
    parser.add_argument("--proxy", default="params")
    parser.add_argument("--storage", choices=("journal", "sqlite"), default="journal",
                        help="the run folder's journal file (codesign's default) or a SQLite file")
    parser.add_argument("--no-floor", action="store_true", help="skip Optuna's floor (for long sampler comparisons)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="search_efficiency_"))
    runs, floors = {}, {}
    try:
        for sampler in args.samplers:
            for seed in args.seeds:
                points, timings, wall, trials = run_one(sampler, seed, args.trials, args.proxy,
                                                        root / f"{sampler}-{seed}", args.storage)
                runs[(sampler, seed)] = (points, timings, wall)
                for floor_storage in () if args.no_floor else ("memory", args.storage):
                    floors.setdefault((sampler, floor_storage), []).extend(
                        optuna_floor(sampler, seed, trials, root / f"floor-{sampler}-{seed}-{floor_storage}",
                                     floor_storage))
                print(f"{sampler} seed {seed}: {len(points[0])} feasible designs in {wall:.1f} s", file=sys.stderr)
        roundtrip = ray_roundtrip()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    checkpoints = sorted(set(args.checkpoints or []) | {args.trials})
    every = np.concatenate([p for (p, _), _, _ in runs.values() if len(p)])
    low, high = every.min(axis=0), every.max(axis=0)
    scale = np.where(high > low, high - low, 1.0)
    reference = np.full(3, 1.1)
    report = {"trials": args.trials, "seeds": args.seeds, "proxy": args.proxy, "storage": args.storage, "samplers": {}}
    for sampler in args.samplers:
        volumes, overheads, walls, parts = [], [], [], []
        at = {n: [] for n in checkpoints}
        for seed in args.seeds:
            (points, numbers), timings, wall = runs[(sampler, seed)]
            normalised = (points - low) / scale
            for n in checkpoints:
                first = normalised[numbers < n]
                at[n].append(float(moocore.hypervolume(first, ref=reference)) if len(first) else 0.0)
            volumes.append(at[args.trials][-1])
            overheads += [t.overhead_s for t in timings]
            parts += timings
            walls.append(wall)
        part = {k: 1e3 * float(np.median([t[k] for t in parts])) for k in ("sample_s", "roundtrip_s", "queued_s", "tell_s", "proxy_s")}
        report["samplers"][sampler] = {
            "hypervolume_mean": float(np.mean(volumes)), "hypervolume_std": float(np.std(volumes)),
            "hypervolumes": volumes,
            "hypervolume_after": {n: (float(np.mean(v)), float(np.std(v))) for n, v in at.items()},
            "overhead_ms_median": 1e3 * float(np.median(overheads)),
            "overhead_ms_p90": 1e3 * float(np.percentile(overheads, 90)), "median_ms": part,
            "wall_s_mean": float(np.mean(walls)),
            "floor_ms_median": 1e3 * float(np.median(floors.get((sampler, args.storage), [np.nan]))),
            "floor_memory_ms_median": 1e3 * float(np.median(floors.get((sampler, "memory"), [np.nan])))}
    report["ray_empty_task_ms"] = 1e3 * roundtrip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{args.trials} trials x seeds {args.seeds}, proxy {args.proxy!r}, {args.storage} storage; hypervolume of ({args.proxy} score, latency, "
              f"energy), normalised, reference 1.1")
        print(f"{'sampler':<8}{'HV mean':>9}{'HV std':>8}{'overhead ms (median / p90)':>29}"
              f"{'sample':>8}{'roundtrip':>10}{'queued':>8}{'tell':>7}{'wall s':>8}{'Optuna floor':>14}{'in memory':>11}{'ratio':>7}")
        for sampler, r in report["samplers"].items():
            m = r["median_ms"]
            print(f"{sampler:<8}{r['hypervolume_mean']:>9.4f}{r['hypervolume_std']:>8.4f}"
                  f"{r['overhead_ms_median']:>19.1f} / {r['overhead_ms_p90']:<7.1f}"
                  f"{m['sample_s']:>8.1f}{m['roundtrip_s']:>10.1f}{m['queued_s']:>8.1f}{m['tell_s']:>7.1f}{r['wall_s_mean']:>8.1f}"
                  f"{r['floor_ms_median']:>14.1f}{r['floor_memory_ms_median']:>11.1f}"
                  f"{r['overhead_ms_median'] / r['floor_ms_median']:>7.1f}")
        print(f"an empty Ray task's round trip: {report['ray_empty_task_ms']:.1f} ms (median)")
        if len(checkpoints) > 1:
            print("hypervolume after N trials (mean +- std over the seeds): "
                  + "  ".join(f"N={n}" for n in checkpoints))
            for sampler, r in report["samplers"].items():
                print(f"  {sampler:<8}" + "  ".join(f"{m:.4f} +- {sd:.4f}" for m, sd in r["hypervolume_after"].values()))
        ratios = {s_: r["overhead_ms_median"] / r["floor_ms_median"] for s_, r in report["samplers"].items()}
        worst = max(ratios, key=ratios.get)
        if not args.no_floor:
            print(f"goal: overhead per trial at most 2x Optuna's floor on the same storage: "
                  f"{'met' if ratios[worst] <= 2 else 'NOT met'} (worst {worst}, {ratios[worst]:.1f}x)")
    return report


if __name__ == "__main__":
    main()
