"""Handing a design over: its files in the formats other tools read.

``design_files(design, fmt)`` gives ``{file name: text or bytes}`` for one format:

* ``json``: the three specs (``network.json``, ``compression.json``,
  ``accelerator.json``), the metrics and the stored per-layer cost report;
* ``scalesim``: a SCALE-Sim v3 topology and cfg (plus ``accelerator.json`` and a note)
  that ``codesign cost`` reads back as the design, with its stored numbers
  (:func:`cost_models.scalesim.export_files`);
* ``onnx``: ``model.onnx``, the trained model with its compression as QDQ nodes and
  pruned weights as zeros (:mod:`codesign.results.onnx_export`): the finalized weights
  when the design was finalized, else the search's (``weights`` chooses), taking images
  laid out as ``layout`` (NHWC by default, as ``Design.predict``);
* ``all``: every one of these, the cost report also as CSV, and a ``README.md`` saying
  what the design is and where each file came from.

:func:`write_design` writes them into a folder; ``codesign export RUN --trial N --format F``
is the command.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from codesign.results.onnx_export import check_layout
from cost_models.version import COST_MODEL_VERSION

FORMATS = ("json", "scalesim", "onnx", "all")


def _stored_numbers(design) -> str:
    total = design.cost_report().total
    return (f"Stored for trial {design.number} (cost model v{design.cost_model_version or '?'}; this export is "
            f"read by v{COST_MODEL_VERSION}): latency {total['latency_s'] * 1e3:.6g} ms, "
            f"energy {total['energy_pj'] / 1e6:.6g} uJ, area {total['area_mm2']:.6g} mm^2.\n")


def json_files(design) -> dict[str, str]:
    """The specs, the metrics and the stored cost report as JSON."""
    return {"network.json": design.network.to_json(), "accelerator.json": design.accelerator.to_json(),
            "compression.json": "null" if design.compression is None else design.compression.to_json(),
            "metrics.json": json.dumps(design.metrics, sort_keys=True),
            "cost_report.json": json.dumps({"cost_model_version": design.cost_model_version,
                                            **design.cost_report().to_dict()})}


def scalesim_files(design) -> dict[str, str]:
    """SCALE-Sim topology and cfg that read back as the design (see :mod:`cost_models.scalesim`)."""
    from cost_models.scalesim import export_files

    return export_files(design.network.workload(compression=design.compression), design.accelerator,
                        _stored_numbers(design))


def onnx_files(design, layout: str = "nhwc", weights: str | None = None) -> dict[str, bytes]:
    """``model.onnx``: the trained model, its compression in QDQ nodes (:mod:`codesign.results.onnx_export`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        design.export_onnx(path, layout, weights)
        return {"model.onnx": path.read_bytes()}


def cost_report_csv(design) -> str:
    """The stored per-layer cost report as CSV, one row per layer, then the totals."""
    report = design.cost_report()
    rows = list(report.layers)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    writer.writerow({columns[0]: "total", **{k: v for k, v in report.total.items() if k in columns}})
    return out.getvalue()


def readme(design, files: dict, layout: str = "nhwc", weights: str = "search") -> str:
    """A short description of the design and of every file of the hand-over; ``weights`` ("final" or "search")
    are those in ``model.onnx``."""
    m, a = design.metrics, design.accelerator
    origin = {
        "network.json": "the network spec (NetworkSpec.from_json reads it; `codesign network network.json` lists it)",
        "compression.json": "the compression policy: bit widths and pruning per layer (null: none)",
        "accelerator.json": "the accelerator spec (Accelerator.from_json; `codesign cost --accelerator`)",
        "metrics.json": "the metrics the search recorded",
        "cost_report.json": f"the per-layer cost report the search ranked the design on (cost model "
                            f"v{design.cost_model_version or '?'})",
        "cost_report.csv": "the same report as CSV: one row per layer, then the totals",
        "topology.csv": "SCALE-Sim v3 topology (extra codesign fields after each row's last comma)",
        "accelerator.cfg": "SCALE-Sim v3 cfg, with a [codesign] section holding the exact accelerator",
        "layout.csv": "the layout file SCALE-Sim 3 asks for",
        "README.txt": "how to run the SCALE-Sim files, and the numbers they give back",
        "model.onnx": "the trained model as ONNX: quantized weights as DequantizeLinear nodes, pruned weights as "
                      "zeros, batch norm folded (check with onnxruntime)",
    }
    lines = [f"# Design: trial {design.number}", "",
             "| metric | value |", "|---|---|"] + [f"| {k} | {v:.6g} |" for k, v in m.items()] + [
        "", f"Accelerator: {a.rows}x{a.cols} PEs, dataflow {a.dataflow}, {a.gb_bytes // 1024} KiB global buffer, "
            f"{a.clock_mhz:g} MHz. Network: {len(design.network.stages)} stages "
            f"({', '.join(s.block for s in design.network.stages)}), "
            f"{design.network.resolution}x{design.network.resolution}x{design.network.in_channels} inputs, "
            f"{design.network.num_classes} classes.", ""]
    if design.final is not None:
        lines += [f"Retrained for {design.final.epochs:g} epochs: validation accuracy "
                  f"{design.final.val_accuracy}, test accuracy {design.final.test_accuracy}.", ""]
    if "model.onnx" in files:
        shape = "(batch, height, width, channels)" if layout == "nhwc" else "(batch, channels, height, width)"
        images = "raw images, as `design.predict` takes them" if design.data is not None else "normalised images"
        lines += [f"`model.onnx` holds the {design.weights_description(weights)}. "
                  f"Its input `images` is float32 {layout.upper()} {shape}: {images}.", ""]
    else:
        lines += ["No `model.onnx`: the trial stored no trained weights (its proxy did not train, or "
                  "save_weights was off).", ""]
    lines += ["| file | what it is |", "|---|---|"] + [f"| `{name}` | {origin.get(name, '')} |" for name in files]
    return "\n".join(lines) + "\n"


def design_files(design, fmt: str, layout: str = "nhwc", weights: str | None = None) -> dict[str, str | bytes]:
    """The design's files in format ``fmt`` (module docstring); the ONNX model's input laid out as ``layout``
    and holding ``weights`` (:meth:`codesign.results.Design.export_onnx`)."""
    if fmt not in FORMATS:
        raise ValueError(f"export: format {fmt!r} is not one of {', '.join(FORMATS)}")
    check_layout(layout)
    if fmt == "json":
        return json_files(design)
    if fmt == "scalesim":
        return scalesim_files(design)
    chosen = design.exported_weights(weights)  # "final" or "search"; a bad choice is an error before any file
    if fmt == "onnx":
        return onnx_files(design, layout, chosen)
    files: dict[str, str | bytes] = {**scalesim_files(design), **json_files(design),
                                     "cost_report.csv": cost_report_csv(design)}
    if chosen == "final" or design.variables is not None:
        files.update(onnx_files(design, layout, chosen))
    files["README.md"] = readme(design, files, layout, chosen)
    return files


def write_design(design, folder: str | Path, fmt: str = "all", layout: str = "nhwc",
                 weights: str | None = None) -> list[Path]:
    """Write the design's files in format ``fmt`` into ``folder`` (:func:`design_files`); returns their paths."""
    files = design_files(design, fmt, layout, weights)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in files.items():
        path = folder / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        paths.append(path)
    return paths
