"""Plots of a search (matplotlib, saved as PNG).

* :func:`plot_pareto`: every completed trial and the Pareto front, accuracy against
  latency and against energy, coloured by the third objective (or by EDP).
* :func:`plot_layers`: one design's per-layer latency (bars, by dataflow) with PE
  utilisation as a line, like Figures 1 and 3 of seeds/002.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from codesign.results import Design, Results  # noqa: E402

UNITS = {"accuracy": "accuracy", "latency": "latency (ms)", "energy": "energy (uJ)", "edp": "EDP (uJ x ms)",
         "area": "area (mm^2)", "model_size": "model size (KiB)"}
DATAFLOW_COLOURS = {"ws": "tab:blue", "os": "tab:orange", "rs": "tab:green", "simd": "tab:gray"}


def plot_pareto(results: Results, path: str | Path) -> Path:
    designs = results.designs
    front = {d.number for d in results.pareto_front}
    colour_by = next((m for m in results.objectives if m not in ("accuracy", "latency", "energy")), "edp")
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colour = np.array([d.metrics.get(colour_by, np.nan) for d in designs])
    shared = dict(cmap="viridis", vmin=np.nanmin(colour), vmax=np.nanmax(colour))
    feasible = np.array([d.feasible for d in designs])
    for ax, x_metric in zip(axes, ("latency", "energy")):
        x = np.array([d.metrics[x_metric] for d in designs])
        y = np.array([d.metrics["accuracy"] for d in designs])
        on = np.array([d.number in front for d in designs])
        rest = ~on & feasible
        scatter = ax.scatter(x[rest], y[rest], c=colour[rest], s=18, alpha=0.5, label="trials", **shared)
        if (~feasible).any():
            ax.scatter(x[~feasible], y[~feasible], c=colour[~feasible], s=22, marker="x", alpha=0.6,
                       label="violates a constraint", **shared)
        ax.scatter(x[on], y[on], c=colour[on], s=60, edgecolors="red", linewidths=1.4, label="Pareto front", **shared)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(UNITS[x_metric])
        ax.set_ylabel(UNITS["accuracy"])
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.colorbar(scatter, ax=axes, label=UNITS[colour_by])
    fig.suptitle(f"{results.study.study_name}: {len(designs)} designs, {len(front)} on the Pareto front")
    return _save(fig, path)


def plot_layers(design: Design, path: str | Path) -> Path:
    report = design.cost_report()
    rows = report.layers
    clock_hz = design.accelerator.clock_mhz * 1e6
    latency_us = np.array([r["cycles"] / clock_hz * 1e6 for r in rows])
    utilisation = np.array([100 * r["utilization"] for r in rows])
    names = [r["layer"] for r in rows]
    colours = [DATAFLOW_COLOURS.get(r["dataflow"], "tab:purple") for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(rows) + 2), 4.2))
    ax.bar(range(len(rows)), latency_us, color=colours)
    ax.set_ylabel("latency (us)")
    ax.set_xticks(range(len(rows)), names, rotation=90, fontsize=7)
    twin = ax.twinx()
    twin.plot(range(len(rows)), utilisation, color="black", marker=".", linewidth=1)
    twin.set_ylabel("PE utilisation (%)")
    twin.set_ylim(0, 105)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in DATAFLOW_COLOURS.values()]
    ax.legend(handles, list(DATAFLOW_COLOURS), title="dataflow", fontsize=7, loc="upper right")
    acc = design.accelerator
    ax.set_title(f"trial {design.number}: {acc.rows}x{acc.cols} {acc.dataflow}, "
                 f"{report.total['latency_s'] * 1e3:.3g} ms, {report.total['energy_pj'] / 1e6:.3g} uJ")
    return _save(fig, path)


def plot_run(results: Results, folder: str | Path) -> list[Path]:
    """The Pareto plot and the layer plot of the front's first design, into ``folder``."""
    folder = Path(folder)
    paths = [plot_pareto(results, folder / "pareto.png")]
    front = results.pareto_front
    if front:
        paths.append(plot_layers(front[0], folder / f"layers_trial{front[0].number}.png"))
    return paths


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
