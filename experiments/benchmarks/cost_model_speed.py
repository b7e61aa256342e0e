"""How fast is the cost model, and how close to SCALE-Sim? Prints what it measures.

    .venv/bin/python experiments/benchmarks/cost_model_speed.py [--accelerators 16384] [--networks 2048]
        [--peers-python PATH] [--peer-layers Conv2,PW2,Conv5x5,DP2]

1. Layer x accelerator evaluations per second, with compile time reported apart: one
   30-layer network over a large mixed-dataflow grid (beside the same call without the
   split by dataflow), many 30-layer networks over one accelerator (beside the same call
   with the grid's [layers, 1] layout instead of [networks, bucket]), a population over a
   grid (nested mode), a single-dataflow grid; XLA's flops per evaluation against a
   multiply-add chain.
2. The memory modes in a batch: operand_buffers beside the default model (global_buffer)
   in the same call, and the scalesim_user replay over the recorded USER runs.
3. Agreement with the recorded SCALE-Sim v3 runs (experiments/scalesim_reference):
   compute-only cycles per dataflow, and total cycles in USER bandwidth mode per memory mode.
4. ONNX import (the ``onnx`` extra): a 100-convolution model built here (conv + batch norm
   + ReLU, residual adds), imported and costed, beside reading the same network from a
   SCALE-Sim topology file.
5. If SCALE-Sim and ZigZag are installed (the ``peers`` extra, in this interpreter or
   the one given by --peers-python / $CODESIGN_PEERS_PYTHON), they are timed on the
   same layers in the same run, and the speed ratio and per-layer agreement printed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from cost_models import (Accelerator, Workload, conv, costs_over_accelerators, costs_over_networks,  # noqa: E402
                         dispatch, evaluate_batch, fc, grid, stack)
from cost_models.scalesim import read_topology  # noqa: E402
from cost_models.workload import LayerArrays  # noqa: E402

sys.path.insert(0, str(ROOT / "experiments" / "scalesim_reference"))
import check_memory_modes  # noqa: E402

REFERENCE = ROOT / "experiments" / "scalesim_reference"


def thirty_layer_network(rng: np.random.Generator, name: str = "net") -> Workload:
    """A random 30-layer CNN-like workload (conv, pointwise, depthwise, a final FC)."""
    layers, channels, size = [], 3, 224
    for i in range(29):
        kind = rng.choice(["conv", "pointwise", "depthwise"]) if i else "conv"
        stride = 2 if (i in (0, 4, 10, 18) and size > 7) else 1
        if kind == "depthwise":
            layers.append(conv(f"l{i}", channels, channels, size, R=3, padding=1, stride=stride, groups=channels))
        else:
            out = int(rng.choice([16, 32, 64, 96, 128, 256, 512]))
            R = 1 if kind == "pointwise" else int(rng.choice([3, 5, 7])) if i == 0 else 3
            layers.append(conv(f"l{i}", channels, out, size, R=R, padding=R // 2, stride=stride))
            channels = out
        size = layers[-1].P
    layers.append(fc("fc", channels * size * size, 1000))
    return Workload(tuple(layers), name)


def timed(fn, repeats=5):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, min(times)


def mixed_grid(n_accelerators: int):
    """A grid of ws, os, ws_systolic and flex (ws or os) accelerators over sizes and buffers."""
    side = int(np.ceil(np.sqrt(n_accelerators / 16)))
    accs = grid(Accelerator(zero_skip=True), rows=list(range(4, 4 + 4 * side, 4)), cols=list(range(4, 4 + 4 * side, 4)),
                dataflow=["ws", "os", "ws_systolic", "flex"], gb_bytes=[32768, 131072, 524288, 2097152])
    return stack(accs[:n_accelerators])


def unsplit_baseline(arrays: LayerArrays, params, per_layer: bool):
    """The same call without splitting the batch by dataflow: every row computed for every
    accelerator, which then selects its own (what a JAX transformation of the model runs)."""
    split = dispatch.dataflow_groups
    dispatch.dataflow_groups = lambda accelerators: [(None, np.arange(accelerators.batch))]
    try:
        return costs_over_accelerators(arrays, params, per_layer=per_layer)
    finally:
        dispatch.dataflow_groups = split


@contextlib.contextmanager
def unfolded_layout():
    """One accelerator's layers laid out [X, 1], as for a grid, instead of [networks, bucket]."""
    shape = dispatch._column_shape
    dispatch._column_shape = lambda layers, n_accelerators: (int(np.prod(np.shape(layers.kind))), 1)
    jax.clear_caches()  # the layout is chosen when a call is traced: trace again inside, and after
    try:
        yield
    finally:
        dispatch._column_shape = shape
        jax.clear_caches()


def rate(label, evaluations, fn, baseline=None, without="the dataflow split", context=contextlib.nullcontext):
    first, steady = timed(fn)
    line = (f"  {label}: {evaluations / steady / 1e6:6.2f} M layer evaluations/s "
            f"(steady {steady * 1e3:.1f} ms, first call {first:.2f} s)")
    if baseline is not None:
        with context():
            _, base = timed(baseline)
        line += f"; without {without} {evaluations / base / 1e6:.2f} M/s ({base / steady:.1f}x slower)"
    print(line)
    return evaluations / steady


def bench_grid(n_accelerators: int) -> dict:
    network = thirty_layer_network(np.random.default_rng(0))
    params = mixed_grid(n_accelerators)
    arrays = network.arrays()
    evals = len(network) * n_accelerators
    print(f"one network ({len(network)} layers) x {n_accelerators:,} accelerators (ws, os, ws_systolic, flex):")
    return {per_layer: rate("totals and per-layer rows" if per_layer else "totals only", evals,
                            lambda: costs_over_accelerators(arrays, params, per_layer=per_layer),
                            lambda: unsplit_baseline(arrays, params, per_layer))
            for per_layer in (False, True)}


def bench_networks(n_networks: int) -> dict:
    rng = np.random.default_rng(1)
    networks = [thirty_layer_network(rng, f"n{i}") for i in range(n_networks)]
    stacked = LayerArrays(*(np.stack(column) for column in zip(*(w.arrays(bucket=32) for w in networks))))
    evals = sum(len(w) for w in networks)
    out = {}
    for dataflow in ("ws", "flex"):
        params = stack(Accelerator(dataflow=dataflow, zero_skip=True))
        print(f"{n_networks:,} networks (30 layers each) x one {dataflow} accelerator:")
        out[dataflow] = {per_layer: rate("totals and per-layer rows" if per_layer else "totals only", evals,
                                         lambda: costs_over_networks(stacked, params, per_layer=per_layer),
                                         lambda: costs_over_networks(stacked, params, per_layer=per_layer),
                                         without="the [networks, bucket] layout", context=unfolded_layout)
                         for per_layer in (False, True)}
    return out


def bench_nested(n_networks: int, n_accelerators: int) -> float:
    """The nested mode of a population: every candidate network swept over the accelerator grid."""
    rng = np.random.default_rng(2)
    networks = [thirty_layer_network(rng, f"n{i}") for i in range(n_networks)]
    stacked = LayerArrays(*(np.stack(column) for column in zip(*(w.arrays(bucket=32) for w in networks))))
    params = mixed_grid(n_accelerators)
    print(f"{n_networks} networks x {n_accelerators:,} accelerators (nested mode of a population):")
    return rate("totals only", 30 * n_networks * n_accelerators,
                lambda: costs_over_networks(stacked, params, per_layer=False))


def flops_and_peak(steady_rate: float):
    """XLA's own count of the kernel's floating-point work, and what XLA reaches on a plain multiply-add chain."""
    network = thirty_layer_network(np.random.default_rng(0))
    params = stack(grid(Accelerator(dataflow="ws", zero_skip=True), rows=list(range(4, 132, 4)), cols=list(range(4, 68, 4))))
    packed_layers = dispatch._pack_layers(LayerArrays(*(x[None] for x in network.arrays())))
    packed = dispatch._pack_accelerators(params)
    compiled = dispatch._packed_grid.lower(packed_layers, packed, dataflows=(0,), compute_only=False, per_layer=False,
                                        has_fc=False, chosen_tiling=None).compile()
    analysis = compiled.cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    per_eval = analysis.get("flops", float("nan")) / (packed_layers.shape[2] * packed.shape[1])
    x = jax.device_put(np.random.default_rng(0).random(1 << 20, np.float32))
    chain = jax.jit(lambda v: functools.reduce(lambda acc, _: acc * 0.999 + 0.001, range(64), v))
    _, seconds = timed(lambda: chain(x))
    peak = 2 * 64 * x.size / seconds
    achieved = steady_rate * per_eval
    print(f"XLA cost analysis: {per_eval:,.0f} flops per layer evaluation (single-dataflow call); at the ws grid "
          f"rate that is {achieved / 1e9:.2f} GFLOP/s, {achieved / peak:.0%} of the {peak / 1e9:.1f} GFLOP/s XLA "
          f"reaches on a multiply-add chain here")


def recorded(mode=None):
    with open(REFERENCE / "recorded.csv") as handle:
        return [r for r in csv.DictReader(handle) if r["status"] == "ok" and (mode is None or r["bandwidth_mode"] == mode)]


def ours_for(rows, layers):
    out = []
    for row in rows:
        calc = row["bandwidth_mode"] == "CALC"
        costs = evaluate_batch(Workload((layers[row["layer"]],)), [check_memory_modes.accelerator_for(row)],
                               compute_only=calc)
        out.append(float(costs.cycles[0]))
    return np.asarray(out)


def agreement():
    layers = {layer.name: layer for layer in read_topology(REFERENCE / "layers.csv")}
    print("\nAgreement with recorded SCALE-Sim v3 runs (experiments/scalesim_reference/recorded.csv):")
    calc = recorded("CALC")
    ours = ours_for(calc, layers)
    theirs = np.asarray([float(r["compute_cycles"]) for r in calc])
    err = np.abs(ours / theirs - 1)
    for df in ("os", "ws", "is"):
        sel = np.asarray([r["dataflow"] == df for r in calc])
        print(f"  compute-only {df}: {sel.sum()} layer runs, max error {err[sel].max():.3%}, mean {err[sel].mean():.3%}")
    print("  USER bandwidth mode, per memory mode (check_memory_modes.py):")
    check_memory_modes.report()
    seconds = np.asarray([float(r["seconds_full_layer_est"]) for r in recorded()])
    print(f"  recorded SCALE-Sim time per layer: median {np.median(seconds):.2f} s, max {seconds.max():.1f} s")


def bench_memory_modes() -> dict:
    """Layer evaluations per second of the memory modes in a batch, beside the default model in the same run."""
    network = thirty_layer_network(np.random.default_rng(0))
    accelerators = grid(Accelerator(dataflow="ws_systolic", mac_bits=8), rows=list(range(4, 132, 4)),
                        cols=list(range(4, 260, 4)))
    n = len(network) * len(accelerators)
    print(f"\nMemory modes: one network ({len(network)} layers) x {len(accelerators):,} ws accelerators, totals:")
    rates = {}
    for memory in ("global_buffer", "operand_buffers"):
        call = functools.partial(evaluate_batch, network, accelerators, per_layer=False, memory=memory)
        seconds = timed(call)[1]  # steady state (the first call compiles)
        rates[memory] = n / seconds
        print(f"  {memory:<16} {rates[memory]:>14,.0f} layer evaluations/s ({seconds * 1e3:.0f} ms per call)")
    rows = check_memory_modes.user_rows(check_memory_modes.CSVS)
    start = time.perf_counter()
    for row in rows:
        check_memory_modes.replay(row)
    seconds = time.perf_counter() - start
    rates["scalesim_user"] = len(rows) / seconds
    recorded_s = sum(float(r["seconds_full_layer_est"]) for r in rows)
    print(f"  scalesim_user    {rates['scalesim_user']:>14,.0f} layer evaluations/s (the {len(rows)} recorded USER runs, "
          f"one by one, no cache: {seconds:.1f} s; SCALE-Sim took {recorded_s:,.0f} s on them, "
          f"{recorded_s / seconds:,.0f}x longer)")
    goal = lambda r: "met" if r >= 1e5 else "NOT met"
    print(f"  goal >= 100,000 layer evaluations/s in a batch: operand_buffers {goal(rates['operand_buffers'])}, "
          f"scalesim_user {goal(rates['scalesim_user'])} (an exact replay walks every address the array demands; "
          f"repeated layers are remembered)")
    return rates


def peers_python(arg: str | None) -> str | None:
    for candidate in (arg, os.environ.get("CODESIGN_PEERS_PYTHON"), sys.executable, "/work/peers-venv/bin/python"):
        if candidate and Path(candidate).exists():
            check = subprocess.run([candidate, "-c", "import scalesim, zigzag.api"], capture_output=True)
            if check.returncode == 0:
                return candidate
    return None


def live_peers(python: str, layer_names: list[str]):
    layers = {layer.name: layer for layer in read_topology(REFERENCE / "layers.csv")}
    print(f"\nPeers timed in this run ({python}), layers {', '.join(layer_names)}, 32x32 array, compute-only:")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "live.csv"
        subprocess.run([python, str(REFERENCE / "record_scalesim.py"), "--configs", "calc_os_32x32,calc_ws_32x32",
                        "--layers", ",".join(layer_names), "--out", str(out)], check=True, capture_output=True)
        with open(out) as handle:
            rows = [r for r in csv.DictReader(handle) if r["status"] == "ok"]
    from peers_zigzag import run_zigzag_layers_subprocess

    zz_layers = [dict(name=n, C=layers[n].C, K=layers[n].K,
                      H=layers[n].H, W=layers[n].W, R=layers[n].R, S=layers[n].S, stride=layers[n].stride,
                      depthwise=layers[n].kind == "depthwise") for n in layer_names]
    zz = {r["name"]: r for r in run_zigzag_layers_subprocess(zz_layers, python=python)}
    ours = ours_for(rows, layers)
    per_layer_ours = []
    for row in rows:
        start = time.perf_counter()
        for _ in range(20):
            evaluate_batch(Workload((layers[row["layer"]],)), [check_memory_modes.accelerator_for(row)], compute_only=True)
        per_layer_ours.append((time.perf_counter() - start) / 20)
    print(f"  {'layer':<8}{'df':<4}{'SCALE-Sim cyc':>14}{'ours':>12}{'err':>8}{'SCALE-Sim s':>12}{'ZigZag s':>10}{'ours s':>10}")
    for row, mine, t in zip(rows, ours, per_layer_ours):
        theirs = float(row["compute_cycles"])
        zs = zz[row["layer"]]["seconds"]
        print(f"  {row['layer']:<8}{row['dataflow']:<4}{theirs:>14,.0f}{mine:>12,.0f}{mine / theirs - 1:>8.2%}"
              f"{float(row['seconds_full_layer_est']):>12.2f}{zs:>10.2f}{t:>10.4f}")
    scalesim_s = np.mean([float(r["seconds_full_layer_est"]) for r in rows])
    zigzag_s = np.mean([z["seconds"] for z in zz.values()])
    print(f"  mean seconds per layer: SCALE-Sim {scalesim_s:.2f}, ZigZag {zigzag_s:.2f}, ours (one layer per call, "
          f"Python overhead included) {np.mean(per_layer_ours):.4f}")
    print(f"  speed ratio per layer, one call each: {scalesim_s / np.mean(per_layer_ours):,.0f}x SCALE-Sim, "
          f"{zigzag_s / np.mean(per_layer_ours):,.0f}x ZigZag")
    return scalesim_s, zigzag_s


def hundred_conv_onnx(blocks: int = 50, channels: int = 64, size: int = 56):
    """A ResNet-like ONNX model with 2 * ``blocks`` convolutions (each with batch norm and ReLU) and ``blocks``
    residual adds, built with onnx.helper."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, weights = [], []
    x = "input"

    def conv_bn_relu(x, name, relu=True):
        w = rng.normal(size=(channels, channels, 3, 3)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"{name}.w"))
        for part, value in (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0)):
            weights.append(numpy_helper.from_array(np.full(channels, value, np.float32), f"{name}.{part}"))
        nodes.append(helper.make_node("Conv", [x, f"{name}.w"], [f"{name}.c"], pads=[1, 1, 1, 1], name=name))
        nodes.append(helper.make_node("BatchNormalization", [f"{name}.c"] + [f"{name}.{p}" for p in
                                      ("scale", "bias", "mean", "var")], [f"{name}.b"], name=f"{name}.bn"))
        if not relu:
            return f"{name}.b"
        nodes.append(helper.make_node("Relu", [f"{name}.b"], [f"{name}.r"], name=f"{name}.relu"))
        return f"{name}.r"

    for b in range(blocks):
        y = conv_bn_relu(conv_bn_relu(x, f"b{b}a"), f"b{b}b", relu=False)
        nodes.append(helper.make_node("Add", [x, y], [f"b{b}.sum"], name=f"b{b}.add"))
        x = f"b{b}.sum"
    graph = helper.make_graph(nodes, "resnet_like", [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [1, channels, size, size])], [helper.make_tensor_value_info(
        x, TensorProto.FLOAT, None)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def bench_onnx_import() -> None:
    """Import of a 100-convolution ONNX model and its cost report, beside reading the same network from a
    SCALE-Sim topology (the baseline), in this run."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        print("\nONNX import: onnx not installed (`pip install -e '.[onnx]'`)")
        return
    from cost_models import evaluate, from_onnx
    from cost_models.scalesim import format_topology

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "resnet_like.onnx"
        onnx.save(hundred_conv_onnx(), str(path))
        topology = Path(tmp) / "resnet_like.csv"
        workload = from_onnx(path)
        topology.write_text(format_topology(workload))
        accelerator = Accelerator(dataflow="flex", zero_skip=True)
        first_report = timed(lambda: evaluate(workload, accelerator).total["latency_s"], repeats=1)[0]
        runs = {"ONNX import": lambda: from_onnx(path), "SCALE-Sim topology read": lambda: read_topology(topology),
                "cost report (after compile)": lambda: evaluate(workload, accelerator).total["latency_s"]}
        medians = {}
        for label, fn in runs.items():
            times = []
            for _ in range(7):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            medians[label] = float(np.median(times))
        size_mb = path.stat().st_size / 1e6
    print(f"\nONNX import: {len(workload)} layers (100 convolutions, batch norm folded, 50 residual adds), "
          f"{size_mb:.0f} MB file:")
    for label, seconds in medians.items():
        print(f"  {label:<30}{1e3 * seconds:>9.1f} ms (median of 7)")
    print(f"  first cost report, compilation included: {first_report:.2f} s")
    total = medians["ONNX import"] + medians["cost report (after compile)"]
    print(f"  import + cost report: {1e3 * total:.0f} ms; goal well under 1 s: {'met' if total < 0.5 else 'NOT met'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accelerators", type=int, default=16384)
    parser.add_argument("--networks", type=int, default=2048)
    parser.add_argument("--peers-python", default=None)
    parser.add_argument("--peer-layers", default="Conv2,PW2,Conv5x5,DP2")
    args = parser.parse_args()
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {os.cpu_count()} CPUs")
    grid_rates = bench_grid(args.accelerators)
    net_rates = bench_networks(args.networks)
    bench_nested(64, 1024)
    print("one network x 2,048 ws accelerators (a single-dataflow grid):")
    ws_arrays = thirty_layer_network(np.random.default_rng(0)).arrays()
    ws_grid = stack(grid(Accelerator(dataflow="ws", zero_skip=True), rows=list(range(4, 132, 4)),
                         cols=list(range(4, 260, 4))))
    ws_rate = rate("totals only", 30 * 2048, lambda: costs_over_accelerators(ws_arrays, ws_grid, per_layer=False))
    flops_and_peak(ws_rate)
    goal = lambda r: "met" if r >= 10e6 else "NOT met"
    print(f"goal >= 10 M layer evaluations/s (totals): grid {goal(grid_rates[False])}, "
          f"networks on ws {goal(net_rates['ws'][False])}, on flex {goal(net_rates['flex'][False])}")
    bench_memory_modes()
    agreement()
    bench_onnx_import()
    python = peers_python(args.peers_python)
    if python:
        scalesim_s, zigzag_s = live_peers(python, args.peer_layers.split(","))
        grid_rate = grid_rates[False]
        print(f"  batched throughput vs peers: {grid_rate * scalesim_s:,.0f}x SCALE-Sim, {grid_rate * zigzag_s:,.0f}x ZigZag "
              f"(layer evaluations per second, ours on the grid)")
    else:
        print("\nSCALE-Sim/ZigZag not installed: `pip install -e '.[peers]'` (or --peers-python) to time them here.")


if __name__ == "__main__":
    main()
