"""A tour of the cost model alone: a SqueezeNet-like workload on the Squeezelerator (per-layer
table), then a 144-accelerator grid in one batched call, timed. `make demo` runs the full
co-design search instead (experiments/quickstart.py).

    .venv/bin/python experiments/cost_model_tour.py
"""

import time

from cost_models import Accelerator, Workload, conv, evaluate, evaluate_batch, grid, pool

LAYERS = (
    conv("conv1", 3, 96, 224, R=7, stride=2, padding=3, w_density=0.6),
    pool("pool1", 96, 112, R=3, stride=2, padding=1),
    conv("fire2_squeeze", 96, 16, 56, w_density=0.6),
    conv("fire2_expand1x1", 16, 64, 56, w_density=0.6),
    conv("fire2_expand3x3", 16, 64, 56, R=3, padding=1, w_density=0.6),
    conv("fire9_squeeze", 512, 64, 13, w_density=0.6),
    conv("fire9_expand3x3", 64, 256, 13, R=3, padding=1, w_density=0.6),
    conv("conv10", 512, 1000, 13, w_density=0.6),
)


def main():
    workload = Workload(LAYERS, "squeezenet_fragment")
    squeezelerator = Accelerator(rows=32, cols=32, dataflow="flex", flex_set=("ws", "os"), rf_bytes=16,
                                 gb_bytes=128 * 1024, dram_bw=16.0, dram_latency=100, zero_skip=True)
    print(evaluate(workload, squeezelerator).table())
    accelerators = grid(squeezelerator, rows=[8, 16, 32, 64], cols=[8, 16, 32, 64],
                        dataflow=["ws", "os", "flex"], gb_bytes=[32 * 1024, 128 * 1024, 512 * 1024])
    start = time.perf_counter()
    costs = evaluate_batch(workload, accelerators)
    seconds = time.perf_counter() - start
    edp = costs.latency_s * costs.energy_pj
    best = int(edp.argmin())
    print(f"\n{len(accelerators)} accelerators evaluated in {seconds:.2f} s (compile included); "
          f"lowest energy-delay product: {accelerators[best]}")


if __name__ == "__main__":
    main()
