#!/usr/bin/env python3
"""Check the ONNX importer against torchvision's published MACs and weight counts.

For every classification model torchvision ships, this script builds the model (random
weights, eval mode), exports it to ONNX (opset 17, batch 1, the input size of its default
weights), imports the file with ``cost_models.import_onnx(path, skip_unsupported=True)``
and compares:

* the imported MACs with torchvision's published count (``meta["_ops"]`` of the model's
  DEFAULT weights: GMACs, which torchvision's docs call GFLOPS); within 1 % is "ok";
* the imported weights with the PyTorch count of convolution and linear weight tensors
  (biases, batch norm and other parameters left out, as the importer leaves them out);
  these should be equal. ``meta["num_params"]`` (every parameter) is shown beside them.

It also adds up the MatMuls and Einsums of two activations in each ONNX graph (attention's
``Q x K^T`` and its product with ``V``) from the graph's inferred shapes, so a
transformer's gap to the published count can be read off. A model that is over 1 % or
whose weights differ is imported a second time after ONNX Runtime's basic graph
optimizations (constant folding, redundant-node removal), which tells the importer's
limits apart from the exported graph's form. Finally it quantizes the exported ResNet-18
with ONNX Runtime (QOperator and QDQ formats) and imports both, which should give the
float model's MACs and weights with 8-bit weights.

It needs torch and torchvision, which the project does not depend on; run it in a
virtual environment of its own, from the repository's root: a CPU build of torch (PyTorch's
CPU wheel index, or a local CPU wheel), then torchvision without its dependencies so pip
does not replace that torch with a CUDA build, then this project with its ``onnx`` extra:

    python3 -m venv .torchenv
    .torchenv/bin/pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
    .torchenv/bin/pip install --no-deps torchvision==0.28.0
    .torchenv/bin/pip install -e ".[onnx]" pillow
    .torchenv/bin/python experiments/onnx_reference/check_torchvision.py --json torchvision.json

Measured with torch 2.13.0 (CPU) and torchvision 0.28.0; the table and how to read it are
in docs/RESULTS.md ("ONNX import").

Options: ``--models resnet18 vit_b_16`` checks only those; ``--folder DIR`` keeps the
.onnx files there (default: a temporary folder, each model's files deleted once checked);
``--skip NAME ...`` replaces the default list of giants left out (``--skip`` alone: none);
``--threads N`` sets torch's and ONNX Runtime's CPU threads (default 1: a shared machine).

Without torch or torchvision it prints one line saying so and exits with code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

#: Exit code when torch or torchvision is not installed.
EXIT_NO_TORCH = 2
OPSET = 17
#: Largest relative difference from the published MACs counted as agreement.
TOLERANCE = 0.01
#: Half the last digit of the published GMACs (torchvision gives three decimals).
PUBLISHED_ROUNDING = 0.0005
#: Models left out by default, with the reason (``--skip`` replaces the list; ``--skip`` alone checks them all).
#: The two giants (over 600 M weights, ONNX files over 2 GB written as external data), measured on the 2-core,
#: 24 GB machine with one thread: each alone peaks near or over this script's 8 GB budget, and a full run that
#: includes them peaks at 9.0 GB. Every other model takes at most 77 s (vit_l_16) and the whole rest ~11 minutes.
SKIP_REASONS: dict[str, str] = {
    "vit_h_14": "giant: its DEFAULT weights are SWAG at 518 x 518, 1017 GMACs; 8.6 GB peak, 90 s",
    "regnet_y_128gf": "giant: SWAG weights at 384 x 384, 375 GMACs; 7.5 GB peak alone, 75 s",
}
#: The model whose quantized exports are checked (QOperator and QDQ).
QUANT_MODEL = "resnet18"
#: Calibration images for the static quantization (random: only the format matters here, not the accuracy).
CALIBRATION_IMAGES = 2
#: An ONNX Runtime-optimized model at least this large keeps its weights in an external data file (protobuf's
#: limit for one file is 2 GiB).
EXTERNAL_DATA_BYTES = 2**30


# --- records -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Imported:
    """What the importer made of one ONNX file (GMACs: 1e9 multiply-accumulates per image)."""

    gmacs: float
    weights: int  # workload.params: convolution and linear weights, no biases
    skipped: dict[str, int]  # op type (with the importer's reason) -> nodes left out
    activation_gmacs: float  # the layers whose second operand is an activation (w_source="activation"), if any
    matmul_gmacs: float  # MatMuls of two activations in the file, from ONNX shape inference (attention)
    matmul_unknown: int  # such MatMuls whose shapes shape inference left unknown (not in matmul_gmacs)


@dataclasses.dataclass(frozen=True)
class Row:
    """One model's comparison."""

    model: str
    weights: str  # the weights enum member whose meta is compared, e.g. "ResNet18_Weights.IMAGENET1K_V1"
    image_size: int  # square input side, from the weights' transforms (crop size)
    published_gmacs: float | None  # meta["_ops"]
    published_params: int  # meta["num_params"]: every parameter (biases, norms, embeddings included)
    exporter: str = ""  # "dynamo" (torch.onnx.export's default) or "torchscript" (dynamo=False)
    torch_params: int | None = None  # every parameter of the model as built here (= published_params)
    conv_linear_weights: int | None = None  # Conv/Linear .weight plus MultiheadAttention's input projections
    imported: Imported | None = None  # the exported file, as imported
    folded: Imported | None = None  # the same file after ONNX Runtime's basic optimizations (rows not ok only)
    seconds: float = 0.0  # build + export + import(s)
    peak_rss_gb: float = 0.0  # the process's peak resident memory so far
    status: str = ""  # "ok", "over 1 %", "no published MACs", "left out (...)" or "error: <first line>"

    def diff_pct(self, imported: Imported | None, with_matmuls: bool = False) -> float | None:
        """Difference from the published MACs, in %; ``with_matmuls``: had every activation MatMul been counted (the
        graph's MatMuls beyond those the importer made layers of added; none when the importer found more, as it
        does where ONNX's shape inference alone leaves their shapes unknown)."""
        if imported is None or not self.published_gmacs:
            return None
        missing = max(0.0, imported.matmul_gmacs - imported.activation_gmacs) if with_matmuls else 0.0
        gmacs = imported.gmacs + missing
        return (gmacs - self.published_gmacs) / self.published_gmacs * 100

    def weights_match(self, imported: Imported | None) -> bool | None:
        return None if imported is None else imported.weights == self.conv_linear_weights

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {
            "diff_pct": self.diff_pct(self.imported), "diff_with_matmuls_pct": self.diff_pct(self.imported, True),
            "weights_match": self.weights_match(self.imported), "folded_diff_pct": self.diff_pct(self.folded),
            "folded_weights_match": self.weights_match(self.folded)}


@dataclasses.dataclass(frozen=True)
class QuantRow:
    """ResNet-18 in one form (float, QOperator, QDQ), as imported."""

    form: str
    gmacs: float | None
    weights: int | None
    w_bits: list[int]  # distinct w_bits of the layers that have weights
    layers: int | None
    skipped: dict[str, int]
    status: str


@dataclasses.dataclass(frozen=True)
class Exporter:
    """Which torch.onnx.export to use: ``dynamo`` (the default) unless it needs packages that are not installed."""

    mode: str  # "auto", "dynamo" or "torchscript"
    fallback_reason: str = ""  # why "auto" moved to torchscript (the default exporter's import error)


# --- torch and torchvision -----------------------------------------------------------------------

_TORCHVISION_OPS_STUB = None  # the torch.library.Library declaring torchvision's ops when its _C.so does not load


def import_torch():
    """``(torch, torchvision)``, or exit with code 2 and one line when either is not installed.

    PyPI's Linux torchvision is built against CUDA torch: with the CPU torch its C++ ops (``_C.so``, used only by
    detection's nms and roi_align) do not load, and importing torchvision fails at ``torchvision::nms does not
    exist``. Then the two ops its import registers fake kernels for are declared (schemas only) and torchvision is
    imported again; the classification models use neither."""
    global _TORCHVISION_OPS_STUB
    try:
        import torch
        import torchvision
    except ImportError as error:
        print(f"check_torchvision.py needs torch and torchvision, which are not installed here ({error}); "
              f"see this script's docstring for the virtual environment to run it in", file=sys.stderr)
        sys.exit(EXIT_NO_TORCH)
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _TORCHVISION_OPS_STUB = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _TORCHVISION_OPS_STUB.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        import torchvision
    return torch, torchvision


def default_weights(torchvision, name: str):
    """The model's DEFAULT weights enum member (the first one when there is no DEFAULT)."""
    enum = torchvision.models.get_model_weights(name)
    return getattr(enum, "DEFAULT", None) or next(iter(enum))


def image_size(weights) -> int:
    """The square input side the weights were evaluated at: their transforms' crop size."""
    crop = weights.transforms().crop_size
    return int(crop[0] if isinstance(crop, (list, tuple)) else crop)


def builder_kwargs(name: str, size: int) -> dict:
    """Arguments that make ``weights=None`` build the architecture the weights describe (as their builder does
    when it loads them): a ViT's position embedding for the weights' image size; GoogLeNet and Inception v3
    without their training-only auxiliary classifiers (not in num_params, not run in eval mode)."""
    if name.startswith("vit_"):
        return {"image_size": size}
    if name in ("googlenet", "inception_v3"):
        return {"aux_logits": False, "init_weights": False}
    return {}


def conv_linear_weights(torch, model) -> int:
    """Entries of convolution and linear weight tensors (what the importer counts): ``.weight`` of every Conv and
    Linear module, MultiheadAttention's out_proj included (a Linear), plus its input projection weights."""
    nn = torch.nn
    total = 0
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            total += module.weight.numel()
        elif isinstance(module, nn.MultiheadAttention):
            for weight in (module.in_proj_weight, module.q_proj_weight, module.k_proj_weight, module.v_proj_weight):
                total += 0 if weight is None else weight.numel()
    return total


def export(torch, model, size: int, path: Path, exporter: Exporter) -> tuple[str, Exporter]:
    """Export ``model`` on one random ``1 x 3 x size x size`` image; ``(exporter used, exporter for the next)``.
    Gradients stay enabled: under ``torch.no_grad()`` an eval-mode nn.MultiheadAttention (the ViTs) takes its fast
    path, ``aten::_native_multi_head_attention``, which the TorchScript exporter cannot export."""
    image = torch.randn(1, 3, size, size)
    if exporter.mode in ("auto", "dynamo"):
        try:
            torch.onnx.export(model, (image,), str(path), opset_version=OPSET, dynamo=True)
            return "dynamo", exporter
        except ImportError as error:  # onnxscript (an extra package) missing
            if exporter.mode == "dynamo":
                raise
            exporter = Exporter("torchscript", f"{type(error).__name__}: {error}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
        torch.onnx.export(model, (image,), str(path), opset_version=OPSET, dynamo=False)
    return "torchscript", exporter


# --- the ONNX side -------------------------------------------------------------------------------

def activation_matmuls(path: Path) -> tuple[int, int]:
    """``(MACs, unknown)`` of the MatMuls and two-operand Einsums whose operands are both computed at run time
    (attention's scores and their product with V), from ONNX shape inference on the file (weights not loaded),
    batch 1; ``unknown`` counts those whose shapes inference did not give."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path), load_external_data=False), data_prop=True)
    graph = model.graph
    dims = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        shape = value.type.tensor_type.shape
        dims[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None for d in shape.dim)
    constant = {init.name for init in graph.initializer}
    macs = unknown = 0
    for node in graph.node:
        if node.op_type == "Constant" or all(name in constant for name in node.input if name):
            constant.update(node.output)  # folded before run time
            continue
        if node.op_type not in ("MatMul", "Einsum") or len(node.input) != 2 \
                or any(name in constant for name in node.input):
            continue
        operands = [dims.get(name) for name in (*node.input, node.output[0])]
        if any(not d or None in d or 0 in d for d in operands):
            unknown += 1
            continue
        count = _product_macs(node, *operands)
        unknown += count is None
        macs += count or 0
    return macs, unknown


def _product_macs(node, a: tuple[int, ...], b: tuple[int, ...], out: tuple[int, ...]) -> int | None:
    """MACs of a MatMul ``[..., M, D] x [..., D, N]`` (every output is D products) or of an Einsum of two operands
    (one product per combination of the indices of both operands); None for an Einsum equation with an ellipsis."""
    if node.op_type == "MatMul":
        return math.prod(out) * a[-1]
    equation = next(attribute.s.decode() for attribute in node.attribute if attribute.name == "equation")
    inputs = equation.replace(" ", "").split("->")[0].split(",")
    if "..." in equation or len(inputs) != 2:
        return None
    sizes = {}
    for letters, shape in zip(inputs, (a, b)):
        sizes.update(zip(letters, shape))
    return math.prod(sizes.values())


def import_file(path: Path) -> Imported:
    """Import one ONNX file (unsupported nodes skipped, external weight data loaded) and count its activation
    MatMuls."""
    from cost_models import import_onnx

    report = import_onnx(path, skip_unsupported=True, name=path.stem)
    workload = report.workload
    by_activation = sum(layer.macs for layer in workload if layer.w_source == "activation")
    matmul_macs, unknown = activation_matmuls(path)
    return Imported(gmacs=workload.macs / 1e9, weights=workload.params, skipped=skipped_counts(report),
                    activation_gmacs=by_activation / 1e9, matmul_gmacs=matmul_macs / 1e9, matmul_unknown=unknown)


def skipped_counts(report) -> dict[str, int]:
    return {unsupported.op_type: unsupported.count for unsupported in report.skipped}


def ort_optimized(path: Path, threads: int) -> Path:
    """The file after ONNX Runtime's basic graph optimizations (ORT_ENABLE_BASIC: constant folding, redundant
    Identity/Slice/Unsqueeze removal, Conv+BN/Mul/Add and MatMul+Add fusions, all in standard ONNX ops), saved
    beside it; weights go to an external data file when the model is large."""
    import onnxruntime

    out = path.with_name(f"{path.stem}_ort_basic.onnx")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    if sum(f.stat().st_size for f in path.parent.iterdir()) >= EXTERNAL_DATA_BYTES:
        options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                         f"{out.stem}.data")
        options.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return out


def first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"


# --- one model -----------------------------------------------------------------------------------

def new_row(torchvision, name: str) -> Row:
    weights = default_weights(torchvision, name)
    return Row(model=name, weights=f"{type(weights).__name__}.{weights.name}", image_size=image_size(weights),
               published_gmacs=weights.meta.get("_ops"), published_params=weights.meta["num_params"])


def check_model(torch, torchvision, name: str, folder: Path, exporter: Exporter, keep: bool,
                threads: int) -> tuple[Row, Exporter]:
    """Build, export, import and compare one model; a failure becomes the row's status, and the run goes on."""
    start = time.perf_counter()
    row = new_row(torchvision, name)
    model_folder = folder / name
    model_folder.mkdir(parents=True, exist_ok=True)
    path = model_folder / f"{name}.onnx"

    def done(**changes) -> Row:
        return dataclasses.replace(row, **changes, seconds=time.perf_counter() - start, peak_rss_gb=peak_rss_gb())

    try:
        model = torchvision.models.get_model(name, weights=None, **builder_kwargs(name, row.image_size)).eval()
        row = dataclasses.replace(row, torch_params=sum(p.numel() for p in model.parameters()),
                                  conv_linear_weights=conv_linear_weights(torch, model))
        used, exporter = export(torch, model, row.image_size, path, exporter)
        row = dataclasses.replace(row, exporter=used)
        del model
        gc.collect()
        row = dataclasses.replace(row, imported=import_file(path))
        diff = row.diff_pct(row.imported)
        if diff is None:
            return done(status="no published MACs"), exporter
        status = "ok" if abs(diff) <= TOLERANCE * 100 else "over 1 %" + rounding_note(row)
        if not status.startswith("ok") or not row.weights_match(row.imported):
            try:
                row = dataclasses.replace(row, folded=import_file(ort_optimized(path, threads)))
            except Exception as error:  # noqa: BLE001 - the second opinion failed: the row keeps the first
                status += f" (ORT-optimized import failed: {first_line(error)})"
        return done(status=status), exporter
    except Exception as error:  # noqa: BLE001 - recorded in the table; the next model goes on
        return done(status=f"error: {first_line(error)}"), exporter
    finally:
        gc.collect()
        if not keep:
            shutil.rmtree(model_folder, ignore_errors=True)


def rounding_note(row: Row) -> str:
    """A note when the difference is within the rounding of the published value (three decimals of GMACs)."""
    if abs(row.imported.gmacs - row.published_gmacs) <= PUBLISHED_ROUNDING:
        return f" (within the published value's rounding, ±{PUBLISHED_ROUNDING} GMACs)"
    return ""


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is in KiB on Linux


# --- the quantization check ----------------------------------------------------------------------

def quantization_check(torch, torchvision, folder: Path, exporter: Exporter) -> list[QuantRow]:
    """ResNet-18 float, and quantized with ONNX Runtime's quantize_static to QOperator and to QDQ, each imported.
    The float file goes through ONNX Runtime's quant_pre_process first, as its docs ask: the TorchScript export
    of a randomly initialized model shares equal folded batch-norm biases through Identity nodes, which
    quantize_static cannot quantize (it expects each bias to be an initializer)."""
    import numpy as np
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    size = image_size(default_weights(torchvision, QUANT_MODEL))
    quant_folder = folder / "quantization"
    quant_folder.mkdir(parents=True, exist_ok=True)
    float_path = quant_folder / f"{QUANT_MODEL}.onnx"
    export(torch, torchvision.models.get_model(QUANT_MODEL, weights=None).eval(), size, float_path, exporter)
    prepared = quant_folder / f"{QUANT_MODEL}_prepared.onnx"
    quant_pre_process(str(float_path), str(prepared))
    input_name = _input_name(prepared)

    class RandomImages(CalibrationDataReader):
        """A few random images, the calibration data quantize_static reads."""

        def __init__(self):
            generator = np.random.default_rng(0)
            self.images = iter([{input_name: generator.standard_normal((1, 3, size, size), dtype=np.float32)}
                                for _ in range(CALIBRATION_IMAGES)])

        def get_next(self):
            return next(self.images, None)

    rows = [_quant_row("float", float_path)]
    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice (pre-processing, formats) on the root logger
    for form in (QuantFormat.QOperator, QuantFormat.QDQ):
        path = quant_folder / f"{QUANT_MODEL}_{form.name}.onnx"
        try:
            # uint8 activations, int8 weights: ONNX Runtime's choice for QOperator on x86-64
            quantize_static(str(prepared), str(path), RandomImages(), quant_format=form,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as error:  # noqa: BLE001 - recorded in its row
            rows.append(QuantRow(form.name, None, None, [], None, {}, f"error: quantize_static: {first_line(error)}"))
            continue
        rows.append(_quant_row(form.name, path))
    return rows


def _input_name(path: Path) -> str:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def _quant_row(form: str, path: Path) -> QuantRow:
    from cost_models import import_onnx

    try:
        report = import_onnx(path, skip_unsupported=True)
    except Exception as error:  # noqa: BLE001 - recorded in its row
        return QuantRow(form, None, None, [], None, {}, f"error: {first_line(error)}")
    workload = report.workload
    bits = sorted({layer.w_bits for layer in workload if layer.params})
    return QuantRow(form, workload.macs / 1e9, workload.params, bits, len(workload.layers), skipped_counts(report),
                    "ok")


# --- output --------------------------------------------------------------------------------------

#: (header, width); numbers right-aligned, the first column and the last three left-aligned.
COLUMNS = (("model", 19), ("size", 4), ("pub GMACs", 9), ("imp GMACs", 9), ("diff %", 7), ("MM GMACs", 9),
           ("MM in imp", 9), ("diff+MM %", 9), ("conv+lin W", 12), ("imported W", 12), ("W", 1), ("pub params", 12),
           ("s", 4), ("ORT-folded: GMACs diff% W MM", 30), ("skipped", 0), ("status", 0))


def _number(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _match(value: bool | None) -> str:
    return {True: "=", False: "≠", None: "-"}[value]


def _skipped(skipped: dict[str, int]) -> str:
    return "; ".join(f"{op} x{count}" for op, count in skipped.items()) or "-"


def row_cells(row: Row) -> list[str]:
    imp, folded = row.imported, row.folded
    matmul = None if imp is None else _number(imp.matmul_gmacs, ".3f") + (f"+{imp.matmul_unknown}?" if
                                                                          imp.matmul_unknown else "")
    folded_text = "-" if folded is None else (f"{folded.gmacs:.3f} {row.diff_pct(folded):+.2f} "
                                              f"{_match(row.weights_match(folded))} MM {folded.matmul_gmacs:.3f}"
                                              + (f"+{folded.matmul_unknown}?" if folded.matmul_unknown else ""))
    skipped = "-" if imp is None else _skipped(imp.skipped)
    if folded is not None and folded.skipped != (imp.skipped if imp else {}):
        skipped += f" | folded: {_skipped(folded.skipped)}"
    return [row.model, str(row.image_size), _number(row.published_gmacs, ".3f"),
            _number(imp and imp.gmacs, ".3f"), _number(row.diff_pct(imp), "+.2f"), matmul or "-",
            _number(imp and imp.activation_gmacs, ".3f"),
            _number(row.diff_pct(imp, with_matmuls=True), "+.2f"), _number(row.conv_linear_weights, ","),
            _number(imp and imp.weights, ","), _match(row.weights_match(imp)), _number(row.published_params, ","),
            f"{row.seconds:.0f}", folded_text, skipped, row.status]


def format_cells(cells: list[str]) -> str:
    last = len(COLUMNS) - 1
    return "  ".join(cell.ljust(width) if i == 0 or i >= last - 2 else cell.rjust(width)
                     for i, (cell, (_, width)) in enumerate(zip(cells, COLUMNS))).rstrip()


def legend() -> str:
    return ("GMACs: 1e9 multiply-accumulates per image (torchvision's 'GFLOPS'). diff %: imported vs published. "
            "MM: MatMuls and Einsums of two activations (attention) in the ONNX graph, from its inferred shapes "
            "(+n?: n more whose shapes are unknown); MM in imp: those the importer counted (w_source='activation' "
            "layers); diff+MM %: had the importer counted all of them (those beyond MM in imp added). W: imported weights = conv+linear "
            "weights (=) or not (≠). ORT-folded: rows not ok, imported again after ONNX Runtime's basic "
            "optimizations (constant folding).")


def within(diff_pct: float | None) -> bool:
    return diff_pct is not None and abs(diff_pct) <= TOLERANCE * 100


def summary(rows: list[Row]) -> str:
    checked = [r for r in rows if not r.status.startswith("left out")]
    ok = sum(r.status.startswith("ok") for r in checked)
    with_matmul = sum(within(r.diff_pct(r.imported, with_matmuls=True)) for r in checked)
    folded_ok = sum(not r.status.startswith("ok") and within(r.diff_pct(r.folded)) for r in checked)
    errors = sum(r.status.startswith("error") for r in checked)
    same = sum(bool(r.weights_match(r.imported)) for r in checked)
    left_out = len(rows) - len(checked)
    return (f"summary: {ok} of {len(checked)} models within 1 % of the published MACs as exported "
            f"({with_matmul} with every activation MatMul counted; {folded_ok} more after ORT's constant folding), "
            f"{same} of {len(checked)} with imported weights equal to the conv+linear count, {errors} errors"
            + (f", {left_out} left out (--skip)" if left_out else ""))


def print_quant(rows: list[QuantRow]) -> None:
    print(f"\nQuantized {QUANT_MODEL} (onnxruntime.quantization: quant_pre_process, then quantize_static with "
          f"{CALIBRATION_IMAGES} random calibration images):")
    print(f"{'form':10} {'GMACs':>8} {'weights':>12} {'w_bits':>7} {'layers':>6}  skipped / status")
    for q in rows:
        print(f"{q.form:10} {_number(q.gmacs, '.4f'):>8} {_number(q.weights, ','):>12} "
              f"{','.join(map(str, q.w_bits)) or '-':>7} {_number(q.layers, 'd'):>6}  {_skipped(q.skipped)} / "
              f"{q.status}")


def provenance(torch, torchvision) -> dict:
    """Versions and the repository state the numbers come from."""
    import onnx
    import onnxruntime

    repo = Path(__file__).resolve().parents[2]

    def git(*args):
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "opset": OPSET, "commit": git("rev-parse", "HEAD"),
            "uncommitted": git("status", "--short", "--untracked-files=no").splitlines()}


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", metavar="NAME", help="models to check (default: every classification "
                        "model torchvision lists)")
    parser.add_argument("--folder", type=Path, help="keep the .onnx files here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the table (and the quantization check) here")
    parser.add_argument("--skip", nargs="*", metavar="NAME", default=list(SKIP_REASONS),
                        help=f"models to leave out (default: {' '.join(SKIP_REASONS) or 'none'}; --skip alone: none)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "torchscript"), default="auto",
                        help="auto: torch.onnx.export's default (dynamo) unless it needs packages not installed, "
                             "then the TorchScript exporter (dynamo=False)")
    parser.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime CPU threads (default 1)")
    parser.add_argument("--no-quant", action="store_true", help="leave out the quantized ResNet-18 check")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch, torchvision = import_torch()
    torch.set_num_threads(args.threads)
    names = args.models or torchvision.models.list_models(module=torchvision.models)
    unknown = sorted(set(names) - set(torchvision.models.list_models()))
    if unknown:
        print(f"unknown torchvision models: {', '.join(unknown)}", file=sys.stderr)
        return 1
    temporary = None if args.folder else tempfile.TemporaryDirectory(prefix="torchvision_onnx_")
    folder = args.folder or Path(temporary.name)
    exporter = Exporter(args.exporter)
    info = provenance(torch, torchvision)
    print(f"torch {info['torch']}, torchvision {info['torchvision']}, onnx {info['onnx']}, onnxruntime "
          f"{info['onnxruntime']}, opset {OPSET}, {args.threads} thread(s), {len(names)} models; repository at "
          f"{info['commit'][:12]}" + (f" with uncommitted changes to {len(info['uncommitted'])} files"
                                      if info["uncommitted"] else ""))
    print(legend())
    print(format_cells([header for header, _ in COLUMNS]), flush=True)
    rows, quant = [], []
    try:
        for name in names:
            if name in args.skip:
                row = dataclasses.replace(new_row(torchvision, name),
                                          status=f"left out ({SKIP_REASONS.get(name, '--skip')})")
            else:
                row, exporter = check_model(torch, torchvision, name, folder, exporter, args.folder is not None,
                                            args.threads)
            rows.append(row)
            print(format_cells(row_cells(row)), flush=True)
        print(summary(rows))
        exporters = sorted({r.exporter for r in rows if r.exporter})
        print(f"exporter: {', '.join(exporters) or 'none'}"
              + (f" (the default exporter needs a package not installed: {exporter.fallback_reason})"
                 if exporter.fallback_reason else ""), flush=True)
        if not args.no_quant:
            quant = quantization_check(torch, torchvision, folder, exporter)
            print_quant(quant)
    finally:
        if temporary is not None:
            temporary.cleanup()
    if args.json:
        data = {"provenance": info, "tolerance": TOLERANCE, "skip_reasons": SKIP_REASONS,
                "rows": [row.to_dict() for row in rows], "quantization": [dataclasses.asdict(q) for q in quant],
                "summary": summary(rows)}
        args.json.write_text(json.dumps(data, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
