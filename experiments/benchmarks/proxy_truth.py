"""A ground truth worth ranking against: candidates trained to convergence with several seeds.

``truth`` draws ``--candidates`` network + compression pairs from the quickstart network
space and a compression space spanning 2- to 16-bit weights, 4- to 16-bit activations and
pruning (the draw is seeded with ``DRAW_SEED``, kept apart from any tuning draw), trains
each stand-alone for ``--epochs`` epochs with every seed of ``--seeds`` and measures its
accuracy on the held-out test split. Results go to a JSON data file
(``experiments/benchmarks/data/proxy_truth_<dataset>.json``), written after every
training, so the work is done in resumable parts (``--minutes`` each, ``--workers``
processes).

``rank`` reads that file and prints the noise ceiling (Kendall tau between the seeds'
accuracies) and, for each proxy, its tau and Spearman rho against the seeds' mean with
its cost: one-off (a supernet's training, a predictor's fitting) and per candidate.

    .venv/bin/python experiments/benchmarks/proxy_truth.py truth --minutes 10 --workers 2
    .venv/bin/python experiments/benchmarks/proxy_truth.py summary
    .venv/bin/python experiments/benchmarks/proxy_truth.py rank --proxies params synflow trained:epochs=1 \
        predictor:teacher=trained,teacher_epochs=3,fit_candidates=24

A proxy is named as ``make_proxy`` takes it: ``name:setting=value,...`` (values read as
JSON); ``hyperband:min_epochs=1,max_epochs=9,reduction=3`` and ``halving:...`` are the
multi-fidelity baseline, training under Optuna's pruner. Its scores go to ``proxy_scores_<dataset>.json`` beside the ground truth, per
candidate, so a later ``rank`` computes only what is missing; supernets and predictors
are kept under ``data/proxy_cache/`` (not versioned) and their one-off cost is read from
their stored records.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from codesign.accuracy.datasets import Dataset, load_dataset  # noqa: E402
from codesign.accuracy.predictor import PredictorProxy  # noqa: E402
from codesign.accuracy.proxies import make_proxy  # noqa: E402
from codesign.accuracy.supernet import SupernetProxy, distinct_pairs  # noqa: E402
from codesign.accuracy.training import TrainConfig, accuracy, predictor, train  # noqa: E402
from search_spaces.compression import CompressionPolicy, CompressionSpace  # noqa: E402
from search_spaces.network_space import NetworkSpace  # noqa: E402
from search_spaces.networks import NetworkSpec  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
#: The held-out draw; tuning uses other seeds (TUNE_SEED).
DRAW_SEED = 2026
TUNE_SEED = 7
#: The quickstart's network space (experiments/quickstart.py), at any input shape.
NETWORKS = NetworkSpace(blocks=("dwsep", "fire", "squeezenext"), stages=(2,), depths=(1, 2), widths=(16, 32),
                        kernels=(3,), stem_kernels=(3, 5), stem_widths=(16,))
#: 2- to 16-bit weights, 4- to 16-bit activations, unpruned and half pruned (both granularities).
COMPRESSION = CompressionSpace(w_bits=(2, 4, 8, 16), a_bits=(4, 8, 16), prune_ratios=(0.0, 0.5))
#: Training seeds of the ground truth (the proxies use seed 0, so they share no initialisation with it).
TRUTH_SEEDS = (1001, 1002)


def networks_for(data: Dataset) -> NetworkSpace:
    """The quickstart network space at the dataset's input shape and class count."""
    return NETWORKS.for_data(data.resolution, data.in_channels, data.num_classes, f"dataset {data.name!r}")


def draw_candidates(data: Dataset, count: int, seed: int = DRAW_SEED) -> list[tuple[NetworkSpec, CompressionPolicy]]:
    """``count`` distinct (network, policy) pairs drawn uniformly from the spaces with ``seed``."""
    space = networks_for(data)
    rng = np.random.default_rng(seed)

    def draw(_):
        spec = space.draw(rng)
        return spec, COMPRESSION.draw(rng, spec)
    return distinct_pairs(draw, count)


# --- the ground truth ----------------------------------------------------------------------------------
def truth_path(dataset: str) -> Path:
    return DATA / f"proxy_truth_{Path(dataset).stem}.json"


def read_truth(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def write_truth(path: Path, truth: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(truth, indent=1, sort_keys=True))
    os.replace(tmp, path)


def new_truth(data: Dataset, pairs, config: TrainConfig, seeds) -> dict:
    return {"dataset": {"name": data.name, "summary": data.summary(), "fingerprint": data.fingerprint,
                        "split_seed": data.seed},
            "draw": {"seed": DRAW_SEED, "network_space": networks_for(data).to_dict(),
                     "compression_space": COMPRESSION.to_dict()},
            "train": config.to_dict(), "seeds": list(seeds),
            "candidates": [{"id": i, "network": spec.to_dict(), "compression": policy.to_dict(), "runs": {}}
                           for i, (spec, policy) in enumerate(pairs)]}


def train_one(dataset: str, network: dict, compression: dict, config: dict, seed: int) -> dict:
    """One stand-alone training (in a worker process): test and validation accuracy, history, time."""
    data = _dataset(dataset)
    spec, policy = NetworkSpec.from_dict(network), CompressionPolicy.from_dict(compression)
    started = time.perf_counter()
    outcome = train(spec, policy, data, TrainConfig(**config), seed)
    run = {"status": outcome.status.value, "val": outcome.score, "history": [list(h) for h in outcome.history],
           "reason": outcome.reason}
    if outcome.ok:
        run["test"] = accuracy(predictor(spec, policy), outcome.weights, data.x_test, data.y_test)
    run["seconds"] = time.perf_counter() - started
    return run


_DATASETS: dict[str, Dataset] = {}


def _dataset(name: str) -> Dataset:
    if name not in _DATASETS:
        _DATASETS[name] = load_dataset(name, seed=0)
    return _DATASETS[name]


def _single_threaded_workers(workers: int) -> None:
    """With one worker per core, each XLA process runs on one thread (inherited by spawned workers)."""
    if workers > 1:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


def compute_truth(args) -> dict:
    """Train what the data file lacks, for at most ``args.minutes`` (the trainings already started finish)."""
    data = _dataset(args.dataset)
    path = Path(args.out) if args.out else truth_path(args.dataset)
    truth = read_truth(path)
    config = TrainConfig(epochs=args.epochs)
    if not truth:
        truth = new_truth(data, draw_candidates(data, args.candidates), config, args.seeds)
    elif truth["dataset"]["fingerprint"] != data.fingerprint or truth["train"] != config.to_dict():
        raise SystemExit(f"{path} holds another dataset or training setting; pass --out for a new file")
    have = len(truth["candidates"])
    if args.candidates > have:  # more candidates: the same draw, continued
        for i, (spec, policy) in enumerate(draw_candidates(data, args.candidates)[have:], start=have):
            truth["candidates"].append({"id": i, "network": spec.to_dict(), "compression": policy.to_dict(),
                                        "runs": {}})
    truth["seeds"] = sorted(set(truth["seeds"]) | set(args.seeds))
    # candidate-major, so every finished part adds candidates with all their seeds
    todo = [(c["id"], seed) for c in truth["candidates"][:args.candidates] for seed in args.seeds
            if str(seed) not in c["runs"]]
    print(f"{path.name}: {len(todo)} trainings to do ({args.epochs:g} epochs each)", file=sys.stderr, flush=True)
    deadline = time.monotonic() + args.minutes * 60
    _single_threaded_workers(args.workers)
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        running = {}
        while todo or running:
            while todo and len(running) < args.workers and time.monotonic() < deadline:
                i, seed = todo.pop(0)
                c = truth["candidates"][i]
                running[pool.submit(train_one, args.dataset, c["network"], c["compression"], config.to_dict(),
                                    seed)] = (i, seed)
            if not running:
                break
            done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                i, seed = running.pop(future)
                run = future.result()
                truth["candidates"][i]["runs"][str(seed)] = run
                write_truth(path, truth)
                print(f"candidate {i} seed {seed}: test {run.get('test', float('nan')):.4f} ({run['seconds']:.0f} s); "
                      f"{len(todo)} left", file=sys.stderr, flush=True)
    return truth


# --- ranking -------------------------------------------------------------------------------------------
def complete(truth: dict) -> tuple[list[dict], np.ndarray]:
    """The candidates with a test accuracy for every seed, and their accuracies [candidates, seeds]."""
    seeds = [str(s) for s in truth["seeds"]]
    rows = [c for c in truth["candidates"] if all("test" in c["runs"].get(s, {}) for s in seeds)]
    return rows, np.array([[c["runs"][s]["test"] for s in seeds] for c in rows])


def kendall(a, b) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def noise_ceiling(accuracies: np.ndarray) -> float:
    """Mean Kendall tau between every two seeds' accuracies."""
    n = accuracies.shape[1]
    taus = [kendall(accuracies[:, i], accuracies[:, j]) for i in range(n) for j in range(i + 1, n)]
    return float(np.mean(taus))


def summary(truth: dict) -> str:
    rows, acc = complete(truth)
    if not rows:
        return "no candidate has all its seeds yet"
    mean = acc.mean(axis=1)
    seconds = [r["seconds"] for c in rows for r in c["runs"].values()]
    return (f"{len(rows)} candidates x {acc.shape[1]} seeds, {truth['train']['epochs']:g} epochs: test accuracy "
            f"{mean.min():.3f} to {mean.max():.3f} (median {np.median(mean):.3f}); noise ceiling (tau seed vs seed) "
            f"{noise_ceiling(acc):.3f}; {np.mean(seconds):.0f} s per training")


# --- proxies against the truth ---------------------------------------------------------------------------
def parse_proxy(text: str):
    """``name:setting=value,...`` -> the proxy (values read as JSON, else as strings)."""
    name, _, rest = text.partition(":")
    settings = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return make_proxy(name, **settings)


def one_off_seconds(proxy, data: Dataset) -> float:
    """Train or fit what the proxy needs once (or read it back) and return what that cost when it was made."""
    if isinstance(proxy, SupernetProxy):
        return float(proxy.supernet(data).record["seconds"])
    if isinstance(proxy, PredictorProxy):  # its teacher's own one-off cost, then scoring the fit pairs and fitting
        record = proxy.predictor(data)[1].record
        return one_off_seconds(proxy.teacher, data) + float(record["teacher_seconds"] + record["fit_seconds"])
    return 0.0


def score_candidates(label: str, proxy, data: Dataset, rows: list[dict], scores: dict, path: Path) -> dict:
    """The proxy's score of every row, computed where ``scores`` lacks it (stored after each candidate)."""
    describe = json.loads(json.dumps(proxy.describe()))
    entry = scores.setdefault(label, {"describe": describe, "scores": {}})
    if entry["describe"] != describe:  # another version or settings under the same label: scored again
        entry = scores[label] = {"describe": describe, "scores": {}}
    if "one_off_s" in entry and all(str(c["id"]) in entry["scores"] for c in rows):
        return entry  # all stored: nothing to train, fit or score
    entry["one_off_s"] = one_off_seconds(proxy, data)
    for c in rows:
        if str(c["id"]) in entry["scores"]:
            continue
        pair = (NetworkSpec.from_dict(c["network"]), CompressionPolicy.from_dict(c["compression"]))
        started = time.perf_counter()
        result, = proxy.evaluate([pair], data, seed=0)
        entry["scores"][str(c["id"])] = {"score": result.score if result.ok else None, "reason": result.reason,
                                         "seconds": time.perf_counter() - started}
        write_truth(path, scores)
    return entry


def pruned_training(label: str, data: Dataset, rows: list[dict], scores: dict, path: Path) -> dict:
    """The multi-fidelity baseline: each candidate trained for up to ``max_epochs`` under Optuna's Hyperband
    (``hyperband:...``) or successive-halving (``halving:...``) pruner, epochs as the budget, in candidate order.
    A candidate's score is how far it got, then its accuracy there: log_r(epochs reached) + accuracy."""
    import optuna

    kind, _, rest = label.partition(":")
    settings = {k: json.loads(v) for k, v in (item.split("=") for item in filter(None, rest.split(",")))}
    low, high, r = settings.get("min_epochs", 1), settings.get("max_epochs", 9), settings.get("reduction", 3)
    entry = scores.setdefault(label, {"describe": {"pruner": kind, "min_epochs": low, "max_epochs": high,
                                                   "reduction": r}, "scores": {}, "one_off_s": 0.0})
    if all(str(c["id"]) in entry["scores"] for c in rows):
        return entry
    entry["scores"] = {}  # a pruner's decisions depend on every earlier trial: the whole run again
    pruner = (optuna.pruners.HyperbandPruner(low, high, r) if kind == "hyperband"
              else optuna.pruners.SuccessiveHalvingPruner(low, r))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    proxy = make_proxy("trained", epochs=high)
    for c in rows:
        trial = study.ask()
        pair = (NetworkSpec.from_dict(c["network"]), CompressionPolicy.from_dict(c["compression"]))

        def report(epoch, value, trial=trial):
            trial.report(value, epoch)
            return trial.should_prune()
        started = time.perf_counter()
        result, = proxy.evaluate([pair], data, seed=0, reporters=[report])
        reached, value = (result.history[-1] if result.history else (0, 0.0))
        study.tell(trial, value if result.ok else None,
                   state=optuna.trial.TrialState.COMPLETE if result.ok else optuna.trial.TrialState.PRUNED)
        entry["scores"][str(c["id"])] = {"score": math.log(max(reached, 1), r) + value, "epochs": reached,
                                         "reason": result.reason, "seconds": time.perf_counter() - started}
        print(f"{label}: candidate {c['id']} stopped at epoch {reached} with {value:.3f}", file=sys.stderr, flush=True)
    write_truth(path, scores)
    return entry


def rank(args) -> str:
    data = _dataset(args.dataset)
    truth = read_truth(truth_path(args.dataset))
    rows, acc = complete(truth)
    ceiling = noise_ceiling(acc) if len(rows) >= 4 else float("nan")
    rows = [c for c in truth["candidates"] if any("test" in r for r in c["runs"].values())]
    if len(rows) < 4:
        return f"only {len(rows)} candidates have a test accuracy; run `truth` first"
    mean = np.array([np.mean([r["test"] for r in c["runs"].values() if "test" in r]) for c in rows])
    both = sum(all("test" in c["runs"].get(str(s), {}) for s in truth["seeds"]) for c in rows)
    if truth["dataset"]["fingerprint"] != data.fingerprint:
        raise SystemExit("the ground truth was computed on other data (fingerprint differs)")
    path = DATA / f"proxy_scores_{Path(args.dataset).stem}.json"
    scores = read_truth(path)
    network_space = NetworkSpace.from_dict(truth["draw"]["network_space"])
    compression_space = CompressionSpace.from_dict(truth["draw"]["compression_space"])
    training_s = float(np.median([r["seconds"] for c in rows for r in c["runs"].values()]))
    lines = [f"{len(rows)} candidates ({both} with all {len(truth['seeds'])} seeds; truth = mean of their seeds' "
             f"test accuracy), {truth['train']['epochs']:g} epochs, median {training_s:.0f} s per training; "
             f"noise ceiling tau {ceiling:.3f} (over the {both})",
             f"{'proxy':58s} {'tau':>6s} {'rho':>6s} {'/ceil':>6s} {'one-off s':>10s} {'(trainings)':>11s} "
             f"{'per cand. ms (mean)':>12s}"]
    for label in args.proxies:
        if label.split(":")[0] in ("hyperband", "halving"):
            entry = pruned_training(label, data, rows, scores, path)
        else:
            proxy = parse_proxy(label).bind(network_space, compression_space, DATA / "proxy_cache")
            entry = score_candidates(label, proxy, data, rows, scores, path)
        got = [entry["scores"][str(c["id"])] for c in rows]
        values = np.array([g["score"] if g["score"] is not None else -np.inf for g in got])
        tau, rho = kendall(values, mean), spearman(values, mean)
        per = 1e3 * float(np.mean([g["seconds"] for g in got]))
        lines.append(f"{label:58s} {tau:6.3f} {rho:6.3f} {tau / ceiling:6.2f} {entry['one_off_s']:10.0f} "
                     f"{entry['one_off_s'] / training_s:11.1f} {per:12.2f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("truth", help="train what the ground-truth file lacks")
    t.add_argument("--dataset", default="mnist")
    t.add_argument("--candidates", type=int, default=48)
    t.add_argument("--seeds", type=int, nargs="+", default=list(TRUTH_SEEDS))
    t.add_argument("--epochs", type=float, default=30)
    t.add_argument("--minutes", type=float, default=10)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--out", help="the data file (default: experiments/benchmarks/data/proxy_truth_<dataset>.json)")
    s = sub.add_parser("summary", help="the ground truth's size, range and noise ceiling")
    s.add_argument("--dataset", default="mnist")
    r = sub.add_parser("rank", help="each proxy's Kendall tau and Spearman rho against the seeds' mean, with costs")
    r.add_argument("--dataset", default="mnist")
    r.add_argument("--proxies", nargs="+", default=["params", "synflow", "trained:epochs=1"])
    args = parser.parse_args(argv)
    if args.command == "truth":
        truth = compute_truth(args)
        print(summary(truth))
    elif args.command == "rank":
        print(rank(args))
    else:
        print(summary(read_truth(truth_path(args.dataset))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
