"""How much faster is the depthwise convolution as shifted taps than XLA's grouped convolution on this CPU?

    .venv/bin/python experiments/benchmarks/depthwise_speed.py [--steps 20]

1. Single layers (batch, map, channels, kernel, stride): forward and gradient milliseconds of
   ``jax.lax.conv_general_dilated(..., feature_group_count=C)`` beside
   ``search_spaces.flax_models.conv2d`` (taps over shifted views), their largest difference,
   and the compile seconds of each gradient.
2. Whole train steps (batch 32, MNIST's 28x28x1) of networks with depthwise layers, the
   project's own models with the grouped convolution put back for the baseline in this run:
   milliseconds per step (median of ``--steps`` after one warm-up), and the seconds one epoch
   of the 3,500 training images takes at that rate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from codesign.accuracy.training import TrainConfig, _steps, init_variables, optimizer  # noqa: E402
from search_spaces import flax_models  # noqa: E402
from search_spaces.compression import CompressionPolicy  # noqa: E402
from search_spaces.flax_models import build_model, conv2d  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from population_training import NETWORKS as QUICKSTART_NETWORKS  # noqa: E402

LAYERS = [(32, 28, 32, 3, 1), (32, 28, 32, 3, 2), (32, 14, 64, 5, 1), (32, 28, 16, 7, 2), (256, 8, 16, 3, 1)]
#: Networks of the MNIST quickstart space (two stages, widths 16 and 32), one per block with depthwise layers.
NETWORKS = {
    "dwsep x2, squeezenext x2": {"net.stem.kernel": 3, "net.s0.block": "dwsep", "net.s0.depth": 2, "net.s0.width": 32,
                                 "net.s1.block": "squeezenext", "net.s1.depth": 2, "net.s1.width": 32},
    "dwsep, dwsep": {"net.stem.kernel": 3, "net.s0.block": "dwsep", "net.s0.depth": 1, "net.s0.width": 16,
                     "net.s1.block": "dwsep", "net.s1.depth": 1, "net.s1.width": 32},
}


def grouped(x, kernel, stride, padding, groups):
    """XLA's grouped convolution: the baseline."""
    return jax.lax.conv_general_dilated(x, kernel.astype(x.dtype), (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def milliseconds(f, *args, steps: int) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def layer_rows(steps: int) -> list[str]:
    rows = ["| batch, map, channels, kernel, stride | grouped fwd / grad ms | taps fwd / grad ms | speed-up fwd / grad "
            "| grad compile s grouped / taps | largest difference |", "|---|---|---|---|---|---|"]
    for B, H, C, K, s in LAYERS:
        x = jax.random.normal(jax.random.key(0), (B, H, H, C))
        w = jax.random.normal(jax.random.key(1), (K, K, 1, C))
        padding = ((K // 2, K // 2),) * 2
        cells = []
        for conv in (grouped, conv2d):
            forward = jax.jit(lambda x, w, conv=conv: conv(x, w, s, padding, C))
            gradient = jax.jit(jax.grad(lambda x, w, conv=conv: (conv(x, w, s, padding, C) ** 2).sum(), argnums=(0, 1)))
            started = time.perf_counter()
            gradient.lower(x, w).compile()
            compile_s = time.perf_counter() - started
            cells.append((milliseconds(forward, x, w, steps=steps), milliseconds(gradient, x, w, steps=steps), compile_s))
        diff = float(np.abs(np.asarray(grouped(x, w, s, padding, C)) - np.asarray(conv2d(x, w, s, padding, C))).max())
        (gf, gg, gc), (tf, tg, tc) = cells
        rows.append(f"| {B}, {H}x{H}, {C}, {K}x{K}, {s} | {gf:.2f} / {gg:.2f} | {tf:.2f} / {tg:.2f} | "
                    f"{gf / tf:.1f}x / {gg / tg:.1f}x | {gc:.2f} / {tc:.2f} | {diff:.1e} |")
    return rows


def step_ms(spec, policy, steps: int) -> float:
    model = build_model(spec, policy)
    variables = init_variables(spec, policy, 0)
    params, masks = variables.pop("params"), variables.pop("masks", {})
    tx = optimizer(TrainConfig(), 3300)
    train_step, _ = _steps(model, tx, 3300)  # a 30-epoch run's programs: XLA's full optimisation
    opt_state = tx.init(params)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int32)
    return milliseconds(lambda: train_step(params, variables, opt_state, masks, x, y)[3], steps=steps)


def network_rows(steps: int) -> list[str]:
    space = QUICKSTART_NETWORKS.for_data(28, 1, 10)
    policy = CompressionPolicy.uniform(8, 8)
    rows = ["| network (8-bit) | grouped ms/step | taps ms/step | speed-up | epoch of 3,500 images, grouped / taps s |",
            "|---|---|---|---|---|"]
    for name, params in NETWORKS.items():
        spec = space.from_params(params)
        flax_models.conv2d = grouped  # the baseline, put back in the module the models call
        before = step_ms(spec, policy, steps)
        flax_models.conv2d = conv2d
        after = step_ms(spec, policy, steps)
        per_epoch = 3500 / 32 / 1e3
        rows.append(f"| {name} | {before:.1f} | {after:.1f} | {before / after:.1f}x | "
                    f"{before * per_epoch:.0f} / {after * per_epoch:.0f} |")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed calls per measurement (median)")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {len(jax.devices())} device(s)\n")
    print("\n".join(layer_rows(args.steps)))
    print()
    print("\n".join(network_rows(args.steps)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
