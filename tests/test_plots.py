"""The plots: readable log axes, trial numbers on the Pareto front, the legend off the points, the
hypervolume history, a nested-mode design's hardware front, the layer labels of long networks, and
``codesign plot``.

One tiny joint-mode search runs for real (Ray, the zero-cost proxy); the nested-mode run and the
axis cases are written through :meth:`Outcome.tell`, the same storage boundary a search uses, so
that they cost no nested sweep (whose JAX compilation takes seconds per network).
"""

import dataclasses
import warnings

import matplotlib
import numpy as np
import optuna
import pytest
from optuna.artifacts import FileSystemArtifactStore

import codesign
from codesign.results import plots
from codesign.metrics import METRICS
from codesign.outcome import Candidate, FrontPoint, Outcome, Status
from codesign.results import Results
from codesign.storage import make_storage, run_folder_storage
from cost_models import Accelerator, evaluate
from cost_models.version import COST_MODEL_VERSION

import tiny
from tiny import NETWORKS


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory, ray_session):
    """A real 4-trial joint-mode search with an area constraint."""
    folder = tmp_path_factory.mktemp("joint") / "run"
    codesign.run(tiny.experiment(folder, name="joint", constraints=[codesign.Constraint("area", max=0.6)]),
                 progress=False)
    return folder


def _study(directions, objectives, storage=None, name="s"):
    study = optuna.create_study(study_name=name, storage=storage, directions=directions)
    study.set_user_attr("codesign.objectives", list(objectives))
    return study


def _tell(study, store, number, metrics, objectives, **fields):
    study.enqueue_trial({"i": number})
    trial = study.ask()
    trial.suggest_int("i", 0, 1000)  # one distinct parameter per design: the front keeps each
    Outcome(Status.COMPLETE, metrics=metrics, values=tuple(metrics[o] for o in objectives), **fields).tell(
        study, trial, store)


@pytest.fixture(scope="module")
def nested_run(tmp_path_factory):
    """A run folder of 4 nested-mode designs, each with a hardware front of 5 accelerators (two alike but for
    their buffer), the second one chosen."""
    folder = tmp_path_factory.mktemp("nested") / "run"
    (folder / "artifacts").mkdir(parents=True)
    store = FileSystemArtifactStore(str(folder / "artifacts"))
    objectives = ("accuracy", "latency", "energy")
    study = _study(["maximize", "minimize", "minimize"], objectives, make_storage(run_folder_storage(folder)),
                   "nested")
    rng = np.random.default_rng(0)
    network = NETWORKS.draw(rng)
    shapes = [(8, 8, "ws", 64), (8, 16, "os", 64), (16, 16, "os", 64), (16, 16, "os", 256), (16, 16, "ws", 64)]
    for number in range(4):
        front = tuple(FrontPoint(Accelerator(rows=r, cols=c, dataflow=df, gb_bytes=kib * 1024),
                                 {"latency": 0.01 / (k + 1) * (1 + 0.1 * number), "energy": 1.0 + 0.2 * k,
                                  "edp": 0.01 * (1.0 + 0.2 * k) / (k + 1), "area": 0.2 * (k + 1)})
                      for k, (r, c, df, kib) in enumerate(shapes))
        chosen = front[1]
        metrics = {**chosen.metrics, "accuracy": 0.5 + 0.1 * number, "model_size": 1.0}
        report = evaluate(network.workload(), chosen.accelerator) if number == 3 else None
        _tell(study, store, number, metrics, objectives, candidate=Candidate(network), accelerator=chosen.accelerator,
              front=front, cost_report=report, cost_model_version=COST_MODEL_VERSION)
    return folder


def _spanning(ratio: float, quality: str = "naswot") -> Results:
    """Eight designs whose latency spans ``ratio`` x (energy twice that), all on the Pareto front."""
    objectives = (quality, "latency", "energy")
    study = _study(["maximize", "minimize", "minimize"], objectives)
    for number, latency in enumerate(np.geomspace(2.1e-3, 2.1e-3 * ratio, 8)):
        _tell(study, None, number, {quality: float(number), "latency": float(latency),
                                    "energy": float(0.7 * latency / 2.1e-3) ** 2, "edp": 1.0, "area": 1.0},
              objectives)
    return Results(study, None)


def _labels_inside(ax, which, values):
    lo, hi = min(values), max(values)
    labels = ax.get_xticklabels() if which == "x" else ax.get_yticklabels()
    position = (lambda t: t.get_position()[0]) if which == "x" else (lambda t: t.get_position()[1])
    return [t.get_text() for t in labels if t.get_text() and lo * (1 - 1e-9) <= position(t) <= hi * (1 + 1e-9)]


def _data_axes(fig):
    return [ax for ax in fig.axes if ax.collections and ax.get_label() != "<colorbar>"]


@pytest.mark.parametrize("ratio", [1.2, 3.0, 1000.0])
def test_hardware_axes_label_at_least_two_ticks_inside_the_data(ratio):
    results = _spanning(ratio)
    fig = plots.pareto_figure(results)
    fig.canvas.draw()
    axes = _data_axes(fig)
    assert len(axes) == 2
    for ax, metric in zip(axes, ("latency", "energy")):
        values = [d.metrics[metric] for d in results.designs]
        assert len(_labels_inside(ax, "x", values)) >= 2, (ratio, metric, [t.get_text() for t in ax.get_xticklabels()])
        lo, hi = sorted(ax.get_xlim())
        shown = [t.get_window_extent() for t in ax.get_xticklabels()
                 if t.get_text() and lo <= t.get_position()[0] <= hi]
        assert not any(a.overlaps(b) for a, b in zip(shown, shown[1:]))
        assert ax.get_ylabel() == METRICS["naswot"].label  # the quality objective, whatever its name
    plots.plt.close(fig)
    assert plots._label("a_new_score") == "a_new_score"  # a metric METRICS does not know: its name


def test_a_run_writes_the_pareto_hypervolume_and_layer_plots(joint_run, tmp_path):
    results = codesign.load(joint_run)
    first = results.pareto_front[0].number
    paths = plots.plot_run(results, tmp_path / "plots")
    assert [p.name for p in paths] == ["pareto.png", "hypervolume.png", f"layers_trial{first}.png"]
    assert all(p.stat().st_size > 5000 for p in paths)


def test_front_points_carry_their_trial_numbers_and_the_legend_covers_no_point(joint_run):
    results = codesign.load(joint_run)
    fig = plots.pareto_figure(results)
    fig.canvas.draw()
    front = {str(d.number) for d in results.pareto_front}
    legend = fig.legends[0].get_window_extent()
    axes = _data_axes(fig)
    assert len(axes) == 2
    for ax in axes:
        texts = {t.get_text() for t in ax.texts}
        assert front <= texts
        assert texts == {str(d.number) for d in results.designs}  # few designs: every one is labelled
        for collection in ax.collections:
            for x, y in ax.transData.transform(collection.get_offsets()):
                assert not (legend.x0 - 4 <= x <= legend.x1 + 4 and legend.y0 - 4 <= y <= legend.y1 + 4)
        boxes = [t.get_window_extent() for t in ax.texts]
        overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
        assert not overlaps
    plots.plt.close(fig)


def test_hypervolume_history_uses_optunas_plot_with_a_reference_point_beyond_every_design(joint_run):
    results = codesign.load(joint_run)
    style = matplotlib.rcParams["axes.facecolor"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = plots.hypervolume_figure(results)
    assert not [w for w in caught if issubclass(w.category, optuna.exceptions.ExperimentalWarning)]
    assert matplotlib.rcParams["axes.facecolor"] == style  # Optuna's ggplot style does not leak
    reference = plots.reference_point(results)
    feasible = [d for d in results.designs if d.feasible]
    for i, direction in enumerate(results.directions):
        worse = (lambda a, b: a > b) if direction == "minimize" else (lambda a, b: a < b)
        assert all(worse(reference[i], d.trial.values[i]) for d in feasible)
    (line,) = fig.axes[0].get_lines()
    x, y = line.get_xdata(), np.asarray(line.get_ydata(), float)
    assert list(x) == [d.number for d in results.designs]
    assert np.all(np.diff(y) >= 0) and 0 < y[-1] <= 1  # a share of the box from the best values to the reference
    plots.plt.close(fig)


def test_hardware_front_of_a_nested_design(nested_run, tmp_path, capsys):
    from codesign.cli import main

    results = codesign.load(nested_run)
    design = results.design(3)
    fig = plots.hardware_front_figure(design)
    fig.canvas.draw()
    ax = _data_axes(fig)[0]
    texts = {t.get_text(): t for t in ax.texts}
    assert set(texts) == {"8x8 ws", "8x16 os", "16x16 os, 64 KiB", "16x16 os, 256 KiB", "16x16 ws"}
    assert matplotlib.colors.same_color(texts["8x16 os"].get_color(), "red")  # the chosen accelerator
    assert len(_labels_inside(ax, "x", [p.metrics["latency"] for p in design.accelerator_front])) >= 2
    plots.plt.close(fig)
    first = results.pareto_front[0].number
    assert f"hardware_front_trial{first}.png" in [p.name for p in plots.plot_run(results, tmp_path / "all")]
    assert main(["plot", str(nested_run), "--trial", "3", "--out", str(tmp_path / "t")]) == 0
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in printed] == ["pareto.png", "layers_trial3.png", "hardware_front_trial3.png"]
    assert main(["plot", str(nested_run), "--hardware-front", "--out", str(tmp_path / "h")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "h" / f"hardware_front_trial{first}.png")]


def test_a_joint_design_has_no_hardware_front_a_one_line_error(joint_run, tmp_path, capsys):
    from codesign.cli import main

    design = codesign.load(joint_run).pareto_front[0]
    with pytest.raises(ValueError, match=f"trial {design.number} has no hardware front"):
        plots.plot_hardware_front(design, tmp_path / "x.png")
    assert main(["plot", str(joint_run), "--trial", str(design.number), "--hardware-front"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codesign: error: trial {design.number} has no hardware front") and err.count("\n") == 1
    assert main(["plot", str(joint_run), "--trial", str(design.number), "--out", str(tmp_path / "p")]) == 0
    assert len(capsys.readouterr().out.split()) == 2  # the Pareto and layer plots: no front to draw


@pytest.mark.parametrize("blocks", [3, 24])
def test_layer_labels_never_overlap(blocks):
    names = ["stem", "stem_pool"] + [f"s{b // 8}b{b % 8}_{part}" for b in range(blocks)
                                      for part in ("reduce", "3x1", "1x3", "expand", "add")] + ["fc"]
    fig, ax = plots.plt.subplots(figsize=(14, 3))
    plots._layer_ticks(ax, names)
    fig.canvas.draw()
    labels = [t for t in ax.get_xticklabels() if t.get_text()]
    texts = [t.get_text() for t in labels]
    if blocks == 3:
        assert texts == names  # they fit: every layer by its name
    else:
        assert len(texts) >= 20 and set(texts) <= {n.split("_")[0] for n in names}  # one label per block
    boxes = [t.get_window_extent() for t in labels]
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
    plots.plt.close(fig)


def test_a_dense_sweep_front_labels_the_pick_and_no_label_overlaps_another_or_leaves_the_axes():
    """255 accelerators with long names (a three-objective sweep's front): the chosen one is labelled in red; the
    others only where a label fits, so no two labels overlap and none runs outside the axes or over the colour
    bar."""
    rng = np.random.default_rng(0)
    base = Accelerator()
    points = []
    for i in range(255):
        accelerator = dataclasses.replace(base, rows=int(2 ** rng.integers(3, 7)), cols=int(2 ** rng.integers(3, 7)),
                                          gb_bytes=int(2 ** rng.integers(15, 19)), rf_bytes=int(2 ** rng.integers(3, 6)),
                                          clock_mhz=100 + i)
        points.append(FrontPoint(accelerator, {"latency": float(10 ** rng.uniform(0, 2)),
                                               "energy": float(rng.uniform(7000, 13000)),
                                               "area": float(rng.uniform(0.1, 10)), "edp": 1.0}))
    fig = plots.front_figure(points, points[7].accelerator, ("latency", "energy"), "lowest edp")
    fig.canvas.draw()
    ax, colour_bar = _data_axes(fig)[0], fig.axes[-1]
    boxes = [t.get_window_extent() for t in ax.texts]
    assert 5 <= len(boxes) <= plots.LABEL_FRONT_UP_TO
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    frame, bar = ax.get_window_extent(), colour_bar.get_window_extent()
    assert all(frame.x0 - 1 <= b.x0 and b.x1 <= frame.x1 + 1 and frame.y0 - 1 <= b.y0 and b.y1 <= frame.y1 + 1
               for b in boxes)
    assert not any(b.overlaps(bar) for b in boxes)
    chosen = [t for t in ax.texts if matplotlib.colors.same_color(t.get_color(), "red")]
    assert [t.get_text() for t in chosen] == [plots.accelerator_names([p.accelerator for p in points])[7]]
    plots.plt.close(fig)
