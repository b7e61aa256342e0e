"""Plots of a search (matplotlib, saved as PNG).

* :func:`plot_pareto`: every completed trial and the Pareto front, the quality objective
  (the run's first non-hardware objective) against each hardware objective, coloured by
  another metric; each front point is labelled with its trial number.
* :func:`plot_hypervolume`: the hypervolume of the feasible trials over the trials
  (Optuna's ``plot_hypervolume_history``), reference point taken from the data.
* :func:`plot_hardware_front`: a nested-mode design's hardware Pareto front (the
  accelerators its network was swept on), the chosen accelerator highlighted.
* :func:`plot_layers`: one design's per-layer latency (bars, by dataflow) with PE
  utilisation as a line, like Figures 1 and 3 of Kwon et al. (DAC'18).
* :func:`plot_layer_comparison`: the same for several cost reports, one panel each.
* :func:`plot_run`: the plots of a run, into one folder.

Each ``plot_*`` saves its figure; the matching ``*_figure`` function returns the figure
unsaved (for tests and notebooks).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from codesign.metrics import METRICS  # noqa: E402
from codesign.results.designs import Design, Results  # noqa: E402
from codesign.sweep import accelerator_names  # noqa: E402
from cost_models.evaluation import CostReport  # noqa: E402

DATAFLOW_COLOURS = {"ws": "tab:blue", "os": "tab:orange", "rs": "tab:green", "simd": "tab:gray"}
#: Label every completed trial with its number (not only the front's) up to this many trials.
LABEL_ALL_UP_TO = 30
#: Label each point of a hardware front up to this many points (beyond: the chosen one and a sample).
LABEL_FRONT_UP_TO = 40


# --- metrics ------------------------------------------------------------------------------

def _is_hardware(name: str) -> bool:
    return name in METRICS and METRICS[name].hardware


def _label(name: str) -> str:
    """A metric's axis label; a metric :data:`METRICS` does not know (a proxy's score) is labelled by its name."""
    return METRICS[name].label if name in METRICS else name


def quality_objective(results: Results) -> str:
    """The y metric: the run's first objective that is not a hardware metric, else its proxy's quality metric."""
    return next((name for name in results.objectives if not _is_hardware(name)), results.quality_metric)


def hardware_objectives(results: Results, designs: Sequence[Design] | None = None) -> list[str]:
    """The x metrics: the run's hardware objectives (at most 3), else latency and energy."""
    names = [n for n in results.objectives if _is_hardware(n)]
    if not names:
        designs = results.designs if designs is None else designs
        names = [n for n in ("latency", "energy") if any(n in d.metrics for d in designs)]
    if not names:
        raise ValueError(f"nothing to plot against: study {results.study.study_name!r} has no hardware metric")
    return names[:3]


def _values(designs: Sequence[Design], name: str) -> np.ndarray:
    return np.array([d.metrics.get(name, np.nan) for d in designs], float)


# --- axes ---------------------------------------------------------------------------------

_NICE_SUBS = ((1,), (1, 3), (1, 2, 5), (1, 2, 3, 5), (1, 2, 3, 5, 7), (1, 2, 3, 4, 5, 6, 7, 8, 9))


def _plain(value, _pos=None) -> str:
    return f"{value:g}"


def scale_axis(ax, which: str, values, log_from: float = 4.0) -> str:
    """Give ``ax``'s x or y axis readable tick labels for ``values``; returns the scale chosen.

    Log scale when the values are positive and span at least ``log_from`` x, with major
    ticks at 1, 3 or 1, 2, 5 (... up to 1..9) x 10^k: the sparsest set that puts 3
    labels inside the data without their overlapping, plain numbers as labels. Else
    linear, with about 5 plainly labelled ticks.
    """
    axis = ax.xaxis if which == "x" else ax.yaxis
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) and v.min() > 0 and v.max() / v.min() >= log_from:
        (ax.set_xscale if which == "x" else ax.set_yscale)("log")
        box = ax.get_position()
        length_in = 0.9 * (box.width * ax.figure.get_figwidth() if which == "x" else
                           box.height * ax.figure.get_figheight())  # less what the layout will take
        axis.set_major_locator(matplotlib.ticker.FixedLocator(_log_ticks(v.min(), v.max(), length_in, which)))
        axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=np.arange(2, 10)))
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        scale = "log"
    else:
        axis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5, min_n_ticks=3))
        scale = "linear"
    axis.set_major_formatter(matplotlib.ticker.FuncFormatter(_plain))
    return scale


def _log_ticks(lo: float, hi: float, length_in: float, which: str) -> np.ndarray:
    """Log-axis ticks inside [lo, hi] whose labels do not overlap on an axis ``length_in`` inches long."""
    lo, hi = lo * (1 - 1e-9), hi * (1 + 1e-9)
    decades = np.arange(np.floor(np.log10(lo)), np.ceil(np.log10(hi)) + 1)
    inch_per_decade = length_in / (np.log10(hi / lo) * 1.1)  # the axis margins take about a tenth

    def inside(subs):
        ticks = np.array([s * 10.0 ** d for d in decades for s in subs])
        return ticks[(ticks >= lo) & (ticks <= hi)]

    def fits(ticks) -> bool:
        gaps = np.diff(np.log10(ticks)) * inch_per_decade
        if which == "y":
            return bool(np.all(gaps >= 0.22))  # 10-point labels, one above the other
        chars = np.array([len(_plain(t)) for t in ticks], float)
        return bool(np.all(gaps >= (chars[1:] + chars[:-1]) / 2 * 0.085 + 0.1))

    options = [inside(subs) for subs in _NICE_SUBS]
    for ticks in options:
        if len(ticks) >= 3 and fits(ticks):
            return ticks
    fitting = [ticks for ticks in options if len(ticks) >= 2 and fits(ticks)]
    if fitting:
        return max(fitting, key=len)
    ticks = next((t for t in options if len(t) >= 2), options[-1])
    while len(ticks) > 2 and not fits(ticks):  # very many decades, or a very short axis
        ticks = ticks[::2]
    return ticks


# --- point labels -------------------------------------------------------------------------

# (dx, dy) in points from the point, horizontal and vertical alignment; the outer ring gets a leader line
_NEAR = ((5, 3, "left", "bottom"), (5, -3, "left", "top"), (-5, 3, "right", "bottom"), (-5, -3, "right", "top"),
         (0, 6, "center", "bottom"), (0, -6, "center", "top"), (7, 0, "left", "center"), (-7, 0, "right", "center"))
_FAR = tuple((2.6 * dx, 2.6 * dy, ha, va) for dx, dy, ha, va in _NEAR)


def label_points(ax, xy, texts: Sequence[str], avoid_xy=(), taken: list | None = None, required: int | None = None,
                 **style) -> list:
    """Annotate the data points ``xy`` with ``texts``, each at the nearby offset that overlaps least.

    Offsets are tried around the point (then further out, with a leader line) and scored
    by their overlap with the labels placed so far, the points ``avoid_xy`` and the area
    outside the axes; earlier labels have priority. The first ``required`` labels (default:
    all) are placed at their best offset whatever it overlaps; any other label is placed
    only where it overlaps no label and stays inside the axes, and is left out otherwise.
    ``taken`` (display boxes of labels placed by an earlier call) is avoided too, and
    extended with this call's labels. Positions are chosen in display coordinates of the
    figure as laid out now, so call it once the figure is complete.
    """
    fig = ax.figure
    fig.canvas.draw()  # run the layout: positions are compared in display coordinates
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    avoid = ax.transData.transform(np.asarray(avoid_xy, float).reshape(-1, 2)) if len(avoid_xy) else np.zeros((0, 2))
    frame = ax.get_window_extent(renderer)
    placed: list = [] if taken is None else taken
    annotations = []
    required = len(texts) if required is None else required
    for n, ((x, y), text) in enumerate(zip(np.asarray(xy, float).reshape(-1, 2), texts)):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        own = ax.transData.transform((x, y))
        others = avoid[np.hypot(*(avoid - own).T) > 0.5] if len(avoid) else avoid
        best = None
        for ring, offsets in enumerate((_NEAR, _FAR)):
            for dx, dy, ha, va in offsets:
                ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va,
                                  annotation_clip=False,
                                  arrowprops=dict(arrowstyle="-", color="0.55", lw=0.5, shrinkA=0, shrinkB=3)
                                  if ring else None, **style)
                box = ann.get_window_extent(renderer)
                cost = 10 * sum(_overlap(box, b) for b in placed)  # labels over labels: the worst
                if len(others):
                    near = ((others[:, 0] > box.x0 - 3 * px) & (others[:, 0] < box.x1 + 3 * px) &
                            (others[:, 1] > box.y0 - 3 * px) & (others[:, 1] < box.y1 + 3 * px))
                    cost += near.sum() * (6 * px) ** 2
                cost += 3 * (box.width * box.height - _overlap(box, frame))
                cost += ring * 4 * px ** 2  # prefer the inner ring when it is as good
                if best is None or cost < best[0]:
                    if best is not None:
                        best[1].remove()
                    best = (cost, ann, box)
                else:
                    ann.remove()
                if best[0] == 0:
                    break
            if best[0] == 0:
                break
        clear = not any(_overlap(best[2], b) for b in placed) and _inside(best[2], frame)
        if n >= required and not clear:
            best[1].remove()  # an optional label with no free place: left out
            continue
        best[1].set_in_layout(False)
        placed.append(best[2])
        annotations.append(best[1])
    return annotations


def _inside(box, frame, slack: float = 1.0) -> bool:
    return (frame.x0 - slack <= box.x0 and box.x1 <= frame.x1 + slack
            and frame.y0 - slack <= box.y0 and box.y1 <= frame.y1 + slack)


def _overlap(a, b) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(w, 0.0) * max(h, 0.0)


# --- the Pareto plot ----------------------------------------------------------------------

def pareto_figure(results: Results):
    """Every completed trial and the Pareto front: the quality metric against each hardware objective."""
    designs = results.designs
    if not designs:
        raise ValueError(f"nothing to plot: no trial of {results.study.study_name!r} completed")
    y_metric = quality_objective(results)
    x_metrics = hardware_objectives(results, designs)
    shown = {y_metric, *x_metrics}
    colour_by = next((m for m in results.objectives if m not in shown), None)
    if colour_by is None:
        colour_by = next((m for m in ("edp", "area", "latency", "energy") if m not in shown
                          and np.isfinite(_values(designs, m)).any()), None)
    front = {d.number for d in results.pareto_front}
    on = np.array([d.number in front for d in designs])
    feasible = np.array([d.feasible for d in designs])
    rest = ~on & feasible
    y = _values(designs, y_metric)
    colour = _values(designs, colour_by) if colour_by else np.full(len(designs), np.nan)
    coloured = np.isfinite(colour).any()
    shared = dict(cmap="viridis", vmin=np.nanmin(colour), vmax=np.nanmax(colour)) if coloured else {}
    paint = (lambda mask: dict(c=colour[mask], **shared)) if coloured else (lambda mask: dict(color="tab:blue"))
    fig, axes = plt.subplots(1, len(x_metrics), figsize=(1.2 + 4.6 * len(x_metrics), 4.6), squeeze=False,
                             layout="constrained")
    axes = axes[0]
    mappable = None
    for ax, x_metric in zip(axes, x_metrics):
        x = _values(designs, x_metric)
        mappable = ax.scatter(x[rest], y[rest], s=18, alpha=0.55, **paint(rest))
        if (~feasible).any():
            ax.scatter(x[~feasible], y[~feasible], s=24, marker="x", alpha=0.7, **paint(~feasible))
        ax.scatter(x[on], y[on], s=60, edgecolors="red", linewidths=1.4, zorder=3, **paint(on))
        scale_axis(ax, "x", x)
        scale_axis(ax, "y", y, log_from=100.0)
        ax.set_xlabel(_label(x_metric))
        ax.set_ylabel(_label(y_metric))
        ax.grid(alpha=0.3)
        ax.grid(alpha=0.12, which="minor")
    if coloured:
        fig.colorbar(mappable, ax=axes, label=_label(colour_by))
    handles = [Line2D([], [], ls="", marker="o", ms=5, color="0.45", alpha=0.6, label="trial")]
    if (~feasible).any():
        handles.append(Line2D([], [], ls="", marker="x", ms=6, color="0.45", label="violates a constraint"))
    handles.append(Line2D([], [], ls="", marker="o", ms=8, mfc="0.65", mec="red", mew=1.4,
                          label="Pareto front (labels: trial numbers)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.suptitle(f"{results.study.study_name}: {len(designs)} designs, {len(front)} on the Pareto front")
    label_all = len(designs) <= LABEL_ALL_UP_TO
    order = np.concatenate([np.flatnonzero(on), np.flatnonzero(~on)]) if label_all else np.flatnonzero(on)
    for ax, x_metric in zip(axes, x_metrics):
        xy = np.column_stack([_values(designs, x_metric), y])
        front_count = int(on.sum())
        taken: list = []
        label_points(ax, xy[order[:front_count]], [str(designs[i].number) for i in order[:front_count]],
                     avoid_xy=xy, taken=taken, fontsize=7, color="darkred")
        if label_all:
            label_points(ax, xy[order[front_count:]], [str(designs[i].number) for i in order[front_count:]],
                         avoid_xy=xy, taken=taken, required=0, fontsize=6, color="0.35")
    return fig


def plot_pareto(results: Results, path: str | Path) -> Path:
    return _save(pareto_figure(results), path)


# --- hypervolume --------------------------------------------------------------------------

def reference_point(results: Results) -> list[float]:
    """Per objective, the worst value among the feasible completed trials, a tenth of the span beyond."""
    values = np.array([d.trial.values for d in results.designs if d.feasible], float)
    values = values.reshape(-1, len(results.directions))
    if not len(values):
        raise ValueError(f"no feasible completed trial in {results.study.study_name!r}: the hypervolume counts "
                         f"feasible trials only")
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in results.directions])
    as_min = sign * values
    worst, best = as_min.max(0), as_min.min(0)
    span = worst - best
    margin = np.where(span > 0, 0.1 * span, np.maximum(0.1 * np.abs(worst), 1e-12))
    return [float(v) for v in sign * (worst + margin)]


def hypervolume_figure(results: Results):
    """Hypervolume of the feasible trials after each completed trial, as a share of the box between the best
    values and the reference point (:func:`reference_point`)."""
    from optuna.exceptions import ExperimentalWarning
    from optuna.visualization.matplotlib import plot_hypervolume_history

    if len(results.directions) < 2:
        raise ValueError(f"the hypervolume needs two or more objectives; {results.study.study_name!r} has "
                         f"{results.objectives or results.directions}")
    reference = reference_point(results)
    with warnings.catch_warnings(), matplotlib.rc_context():  # Optuna switches to its own style: keep ours after
        warnings.simplefilter("ignore", ExperimentalWarning)
        ax = plot_hypervolume_history(results.study, reference)
    fig = ax.figure
    fig.set_size_inches(7, 4)
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in results.directions])
    values = np.array([d.trial.values for d in results.designs if d.feasible], float)
    box = float(np.prod(sign * np.asarray(reference) - (sign * values).min(0)))
    for line in ax.get_lines():
        line.set_ydata(np.asarray(line.get_ydata(), float) / box)
        line.set_drawstyle("steps-post")
    ax.relim()
    ax.autoscale_view()
    ax.set_ylim(bottom=0)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (share of the reference box)")
    names = results.objectives or [f"objective {i}" for i in range(len(reference))]
    ref_text = ", ".join(f"{n} {v:.3g}" for n, v in zip(names, reference))
    ax.set_title(f"{results.study.study_name}: hypervolume of the feasible trials\nreference point: {ref_text}",
                 fontsize=9)
    fig.tight_layout()
    return fig


def plot_hypervolume(results: Results, path: str | Path) -> Path:
    return _save(hypervolume_figure(results), path)


# --- a nested-mode design's hardware front ------------------------------------------------

def hardware_front_figure(design: Design, metrics: Sequence[str] = ("latency", "energy")):
    """The accelerators of ``design``'s hardware Pareto front (nested mode), the design's own ringed."""
    points = design.accelerator_front
    if not points:
        raise ValueError(f"trial {design.number} has no hardware front: only nested-mode trials keep one "
                         f"(this design's accelerator was searched jointly)")
    return front_figure(points, design.accelerator, metrics, f"trial {design.number}'s accelerator",
                        f"trial {design.number}: hardware Pareto front of its network", design.metrics)


def front_figure(points, chosen_accelerator, metrics: Sequence[str] = ("latency", "energy"),
                 chosen_label: str = "chosen", title: str = "hardware Pareto front", chosen_metrics=None):
    """A hardware Pareto front: ``metrics[0]`` against ``metrics[1]``, coloured and sized by area (or another
    hardware metric), ``chosen_accelerator`` ringed, each point labelled rows x cols dataflow."""
    x_metric, y_metric = metrics[:2]
    colour_by = next(m for m in ("area", "edp", "latency", "energy") if m not in (x_metric, y_metric))
    get = lambda name: np.array([p.metrics.get(name, np.nan) for p in points], float)
    x, y, colour = get(x_metric), get(y_metric), get(colour_by)
    chosen = next((i for i, p in enumerate(points) if p.accelerator == chosen_accelerator), None)
    if chosen is None and chosen_metrics:  # match by metrics when the stored accelerator differs in a detail
        distance = np.abs(x - chosen_metrics.get(x_metric, np.nan)) + np.abs(y - chosen_metrics.get(y_metric, np.nan))
        chosen = int(np.nanargmin(distance)) if np.isfinite(distance).any() else None
    finite = np.isfinite(colour)
    span = np.nanmax(colour) - np.nanmin(colour) if finite.any() else 0.0
    size = 30 + 150 * ((colour - np.nanmin(colour)) / span if span > 0 else np.full(len(points), 0.5))
    size = np.where(finite, size, 40)
    order = np.argsort(-np.nan_to_num(size))  # large markers first: small ones stay visible on top
    fig, ax = plt.subplots(figsize=(7.2, 5), layout="constrained")
    mappable = ax.scatter(x[order], y[order], s=size[order], c=colour[order], cmap="viridis", alpha=0.85,
                          edgecolors="0.2", linewidths=0.5)
    handles = [Line2D([], [], ls="", marker="o", ms=7, color="0.55", label=f"front accelerator "
                      f"(size, colour: {colour_by})")]
    if chosen is not None:
        ax.scatter(x[chosen], y[chosen], s=size[chosen] + 120, facecolors="none", edgecolors="red", linewidths=1.8,
                   zorder=3)
        handles.append(Line2D([], [], ls="", marker="o", ms=11, mfc="none", mec="red", mew=1.8,
                              label=f"chosen: {chosen_label}"))
    scale_axis(ax, "x", x)
    scale_axis(ax, "y", y)
    ax.set_xlabel(_label(x_metric))
    ax.set_ylabel(_label(y_metric))
    ax.grid(alpha=0.3)
    ax.grid(alpha=0.12, which="minor")
    fig.colorbar(mappable, ax=ax, label=_label(colour_by))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    fig.suptitle(f"{title}, {len(points)} accelerator{'s' if len(points) != 1 else ''}")
    names = accelerator_names([p.accelerator for p in points])
    labelled = list(range(len(points)))
    if len(points) > LABEL_FRONT_UP_TO:
        labelled = sorted(set(range(0, len(points), int(np.ceil(len(points) / LABEL_FRONT_UP_TO)))))
    if chosen is not None:
        labelled = [chosen] + [i for i in labelled if i != chosen]
    xy = np.column_stack([x, y])
    # the chosen accelerator is always labelled; the others where a label fits clear of every other label
    annotations = label_points(ax, xy[labelled], [names[i] for i in labelled], avoid_xy=xy,
                               required=int(chosen is not None), fontsize=7)
    if chosen is not None and annotations:
        annotations[0].set_color("red")
    return fig


def plot_hardware_front(design: Design, path: str | Path, metrics: Sequence[str] = ("latency", "energy")) -> Path:
    return _save(hardware_front_figure(design, metrics), path)


def plot_sweep(result, path: str | Path) -> Path:
    """A :class:`~codesign.sweep.HardwareSweep`'s front (``codesign sweep --out``), its first two objectives as axes."""
    metrics = tuple(result.objectives[:2]) if len(result.objectives) >= 2 else ("latency", "energy")
    return _save(front_figure(result.front, result.chosen, metrics, f"lowest {result.tie_break}",
                              f"{result.network}: hardware Pareto front of {result.swept} accelerators"), path)


def _front_metrics(results: Results) -> tuple[str, str]:
    """The hardware front's axes: the run's first two hardware objectives, else latency and energy."""
    names = [n for n in results.objectives if _is_hardware(n)]
    return tuple(names[:2]) if len(names) >= 2 else ("latency", "energy")


# --- per-layer plots ----------------------------------------------------------------------

def plot_layers(design: Design, path: str | Path) -> Path:
    report = design.cost_report()
    acc = design.accelerator
    fig, ax = plt.subplots(figsize=(min(14, max(6.5, 0.3 * len(report.layers) + 2)), 4.4))
    _layer_panel(ax, report, f"trial {design.number}: {acc.rows}x{acc.cols} {acc.dataflow}, "
                             f"{report.total['latency_s'] * 1e3:.3g} ms, {report.total['energy_pj'] / 1e6:.3g} uJ")
    fig.tight_layout()
    return _save(fig, path)


def plot_layer_comparison(reports: Mapping[str, CostReport], path: str | Path, title: str = "") -> Path:
    """Per-layer latency and utilisation of several cost reports, one panel each.

    For side-by-side views such as Kwon et al. (DAC'18) Figure 1 (one network under WS, OS and the
    per-layer choice) and Figure 3 (network variants on one accelerator). Each panel has
    its own latency scale; its title gives the totals.
    """
    longest = max(len(r.layers) for r in reports.values())
    fig, axes = plt.subplots(len(reports), 1, figsize=(min(14, max(6.5, 0.3 * longest + 2)), 3.1 * len(reports)),
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
    ax.bar(x, latency_us, color=[DATAFLOW_COLOURS.get(r["dataflow"], "tab:purple") for r in rows], zorder=2)
    ax.set_ylabel("latency (us)")
    ax.set_xlim(-0.7, len(rows) - 0.3)
    _layer_ticks(ax, [r["layer"] for r in rows])
    on_array = np.array([r["dataflow"] != "simd" for r in rows])
    twin = ax.twinx()
    twin.plot(x[on_array], [100 * r["utilization"] for r, a in zip(rows, on_array) if a], color="black",
              marker=".", markersize=3, linewidth=0.8, linestyle=":")
    twin.set_ylabel("PE utilisation (%)")
    twin.set_ylim(0, 105)
    handles = [plt.Rectangle((0, 0), 1, 1, color=DATAFLOW_COLOURS.get(df, "tab:purple")) for df in used]
    handles.append(Line2D([], [], color="black", marker=".", markersize=3, linewidth=0.8, linestyle=":"))
    # one row just above the axes, the title above it: neither covers a bar
    ax.legend(handles, [f"dataflow {df}" for df in used] + ["PE utilisation (right axis)"], fontsize=7,
              loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(handles), frameon=False, borderaxespad=0.1,
              handlelength=1.2, columnspacing=1.0)
    ax.set_title(title, fontsize=9, loc="left", pad=16)


def _layer_ticks(ax, names: list[str]) -> None:
    """Layer names as x tick labels, as many as the axes' width holds.

    When every name does not fit, consecutive layers of one block (the name up to its
    first ``_``, e.g. ``s1b3``) share one label at the block's centre (horizontal when
    they fit, labels too close to the previous one left out), blocks alternate in
    shading, and each layer keeps a minor tick; failing that, every k-th layer is
    labelled with its index.
    """
    n = len(names)
    x = np.arange(n)
    width_in = ax.get_position().width * ax.figure.get_figwidth()
    room = max(8, int(width_in * 5.5))  # rotated 7-point labels: about 5 an inch stay apart
    if n <= room:
        ax.set_xticks(x, names, rotation=90, fontsize=7)
        return
    groups: list[list] = []
    for i, name in enumerate(names):
        key = name.split("_")[0]
        if groups and groups[-1][2] == key:
            groups[-1][1] = i
        else:
            groups.append([i, i, key])
    if len(groups) <= room:
        per_layer = width_in / n  # inches
        centres = np.array([(a + b) / 2 for a, b, _ in groups]) * per_layer
        widths = np.array([len(g[2]) * 0.075 + 0.05 for g in groups])  # 9-point characters, and a gap
        flat = _spaced(centres, widths)
        upright = _spaced(centres, np.full(len(groups), 0.16))  # rotated labels: one line of text apart
        kept, rotation = (flat, 0) if len(flat) >= 0.8 * len(groups) else (upright, 90)
        centres = centres / per_layer
        ax.set_xticks([centres[i] for i in kept], [groups[i][2] for i in kept], rotation=rotation, fontsize=9)
        ax.set_xticks(x, minor=True)
        ax.tick_params(axis="x", which="major", length=0)
        for k, (a, b, _) in enumerate(groups):
            if k % 2:
                ax.axvspan(a - 0.5, b + 0.5, color="0.92", zorder=0, linewidth=0)
        ax.set_xlabel(f"{n} layers, grouped by block (alternate shading)", fontsize=8)
        return
    step = int(np.ceil(n / room))
    ax.set_xticks(x[::step], [f"{i} {names[i]}" for i in x[::step]], rotation=90, fontsize=7)
    ax.set_xticks(x, minor=True)
    ax.set_xlabel(f"layer (every {step}th labelled: index and name)", fontsize=8)



def _spaced(centres: np.ndarray, widths: np.ndarray) -> list[int]:
    """Indices of labels at ``centres`` (increasing) with ``widths``, kept from the left so that none overlap."""
    kept: list[int] = []
    for i, c in enumerate(centres):
        if not kept or c - centres[kept[-1]] >= (widths[i] + widths[kept[-1]]) / 2:
            kept.append(i)
    return kept


# --- a run --------------------------------------------------------------------------------

def plot_run(results: Results, folder: str | Path) -> list[Path]:
    """The plots of a run into ``folder``: the Pareto plot, the hypervolume history (two or more objectives and
    completed trials), and for the front's first design its per-layer plot and, in nested mode, its hardware
    front."""
    folder = Path(folder)
    paths = [plot_pareto(results, folder / "pareto.png")]
    designs = results.designs
    if len(results.directions) >= 2 and len(designs) >= 2 and any(d.feasible for d in designs):
        paths.append(plot_hypervolume(results, folder / "hypervolume.png"))
    front = results.pareto_front
    if front:
        paths.append(plot_layers(front[0], folder / f"layers_trial{front[0].number}.png"))
        if front[0].accelerator_front:
            paths.append(plot_hardware_front(front[0], folder / f"hardware_front_trial{front[0].number}.png",
                                             _front_metrics(results)))
    return paths


def plot_trial(results: Results, number: int, folder: str | Path, hardware_front_only: bool = False) -> list[Path]:
    """For trial ``number``: the Pareto plot, its per-layer plot and its hardware front (nested mode); with
    ``hardware_front_only``, just the hardware front (a ValueError when the trial has none)."""
    folder = Path(folder)
    design = results.design(number)
    front_path = folder / f"hardware_front_trial{number}.png"
    if hardware_front_only:
        return [plot_hardware_front(design, front_path, _front_metrics(results))]
    paths = [plot_pareto(results, folder / "pareto.png"), plot_layers(design, folder / f"layers_trial{number}.png")]
    if design.accelerator_front:
        paths.append(plot_hardware_front(design, front_path, _front_metrics(results)))
    return paths


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
