"""Plots of a search (matplotlib, saved as PNG).

* :func:`plot_pareto`: every completed trial and the Pareto front, accuracy against
  latency and against energy, coloured by the third objective (or by EDP).
* :func:`plot_layers`: one design's per-layer latency (bars, by dataflow) with PE
  utilisation as a line, like Figures 1 and 3 of Kwon et al. (DAC'18).
* :func:`plot_layer_comparison`: the same for several cost reports, one panel each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from codesign.metrics import METRICS  # noqa: E402
from codesign.results import Design, Results  # noqa: E402
from cost_models.evaluate import CostReport  # noqa: E402

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
        ax.set_xlabel(METRICS[x_metric].label)
        ax.set_ylabel(METRICS["accuracy"].label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    fig.colorbar(scatter, ax=axes, label=METRICS[colour_by].label)
    fig.suptitle(f"{results.study.study_name}: {len(designs)} designs, {len(front)} on the Pareto front")
    return _save(fig, path)


def plot_layers(design: Design, path: str | Path) -> Path:
    report = design.cost_report()
    acc = design.accelerator
    fig, ax = plt.subplots(figsize=(max(6, 0.32 * len(report.layers) + 2), 4.2))
    _layer_panel(ax, report, f"trial {design.number}: {acc.rows}x{acc.cols} {acc.dataflow}, "
                             f"{report.total['latency_s'] * 1e3:.3g} ms, {report.total['energy_pj'] / 1e6:.3g} uJ")
    return _save(fig, path)


def plot_layer_comparison(reports: Mapping[str, CostReport], path: str | Path, title: str = "") -> Path:
    """Per-layer latency and utilisation of several cost reports, one panel each.

    For side-by-side views such as Kwon et al. (DAC'18) Figure 1 (one network under WS, OS and the
    per-layer choice) and Figure 3 (network variants on one accelerator). Each panel has
    its own latency scale; its title gives the totals.
    """
    longest = max(len(r.layers) for r in reports.values())
    fig, axes = plt.subplots(len(reports), 1, figsize=(min(18, max(6, 0.3 * longest + 2)), 2.9 * len(reports)),
                             squeeze=False)
    for ax, (name, report) in zip(axes[:, 0], reports.items()):
        _layer_panel(ax, report, f"{name}: {report.total['latency_s'] * 1e3:.3g} ms, "
                                 f"{report.total['energy_pj'] / 1e6:.3g} uJ, "
                                 f"utilisation {100 * report.total['utilization']:.0f} %")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def _layer_panel(ax, report: CostReport, title: str) -> None:
    """Bars of per-layer latency coloured by dataflow; PE utilisation of the array layers as a dotted line."""
    rows = report.layers
    clock_hz = report.accelerator.clock_mhz * 1e6
    x = np.arange(len(rows))
    latency_us = np.array([r["cycles"] / clock_hz * 1e6 for r in rows])
    used = list(dict.fromkeys(r["dataflow"] for r in rows))
    ax.bar(x, latency_us, color=[DATAFLOW_COLOURS.get(r["dataflow"], "tab:purple") for r in rows])
    ax.set_ylabel("latency (us)")
    step = max(1, len(rows) // 60)
    ax.set_xticks(x[::step], [r["layer"] for r in rows][::step], rotation=90, fontsize=6 if step > 1 else 7)
    on_array = np.array([r["dataflow"] != "simd" for r in rows])
    twin = ax.twinx()
    twin.plot(x[on_array], [100 * r["utilization"] for r, a in zip(rows, on_array) if a], color="black",
              marker=".", markersize=3, linewidth=0.8, linestyle=":")
    twin.set_ylabel("PE utilisation (%)")
    twin.set_ylim(0, 105)
    handles = [plt.Rectangle((0, 0), 1, 1, color=DATAFLOW_COLOURS.get(df, "tab:purple")) for df in used]
    ax.legend(handles, used, title="dataflow", fontsize=7, loc="upper right")
    ax.set_title(title, fontsize=9)


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
