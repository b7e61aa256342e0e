"""Adapter that runs ZigZag (PyPI ``zigzag-dse`` 3.9.1) on a single conv layer.

The ``codesign`` speed benchmark uses this to time ZigZag on the same layers as
our own analytical PE-array model, when the peer tools are installed.

ZigZag is *not* a dependency of the main project: it lives in a separate
virtualenv (``/work/peers-venv``, created with
``pip install zigzag-dse==3.9.1 six "numpy<2.4"``; zigzag-dse imports ``six``
without declaring it).  This module therefore imports ``zigzag`` only inside
functions, so importing it from the main environment is always safe.  From the
main environment use :func:`run_zigzag_layers_subprocess`, which runs this file
with the peers-venv interpreter and exchanges JSON.

How a layer is run
------------------
* Entry point: ``zigzag.api.get_hardware_performance_zigzag(workload,
  accelerator, mapping, opt="latency", dump_folder=<tmp>, lpf_limit=6,
  loma_show_progress_bar=False)`` (all other arguments at their defaults:
  LOMA temporal-mapping search, "uneven" temporal mapping, no in-memory
  compute, no mixed spatial mappings).
* Workload: the layer is written in ZigZag's YAML workload format (the same
  dict the ZigZag ONNX Conv parser builds: ``O[b][g][k][oy][ox] +=
  W[g][k][c][fy][fx] * I[b][g][c][iy][ix]``, 8-bit W/I, 16-bit partial sums,
  8-bit final outputs) into a temporary directory; no ONNX export is needed.
  Depthwise layers follow ZigZag's ONNX convention: ``G = C`` groups with
  ``C = 1`` and ``K = K / C`` (the channel multiplier, normally 1) per group.
* Hardware/mapping: the example accelerators shipped inside the installed
  package (``<site-packages>/zigzag/inputs/hardware/*.yaml``) with their
  matching shipped mapping (``inputs/mapping/*.yaml``).  The default is the
  TPU-like 32x32 weight-stationary systolic array (``tpu_like.yaml`` +
  mapping ``tpu_like.yaml``, whose ``default`` entry unrolls K=32 on D1 and
  C=32 on D2).  Accelerators without a shipped mapping (e.g. ``eyeriss_like``)
  get a temporary mapping with only the ``default`` memory-operand links, so
  ZigZag generates the spatial mapping itself (``nb_spatial_mappings_generated``
  left at its default of 3).
* Mapping search: LOMA with ``lpf_limit=6`` (the API default and the value
  used in ZigZag's own examples); the best mapping is chosen for latency.
* Padding: "same"-style, ``R // 2`` rows and ``S // 2`` columns on each side
  unless the layer dict has ``padding`` (int, or ``(pad_h, pad_w)``).  Output
  size is ``(H + 2*pad_h - R) // stride + 1`` (same for W).
* Logging: ZigZag logs at INFO and calls ``logging.basicConfig`` itself; the
  ``zigzag`` logger is raised to ERROR for the call and any root handler that
  ZigZag installs is removed again afterwards.  Stray stdout is discarded.

Units: ``cycles`` is ZigZag's ``latency_total2`` (clock cycles including
on/off-loading stalls); ``energy_pj`` is ``energy_total`` (the shipped
hardware files give all costs in pJ); ``seconds`` is the wall time of the API
call (workload/mapping parsing, mapping search, cost model and ZigZag's small
result dumps), excluding the one-time ``import zigzag`` (~1 s).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

DEFAULT_HARDWARE = "tpu_like"
DEFAULT_PEERS_PYTHON = "/work/peers-venv/bin/python"
DEFAULT_LPF_LIMIT = 6  # LOMA loop-prime-factor limit; ZigZag's API default

# Shipped accelerator -> shipped mapping file (both under zigzag/inputs/).
_SHIPPED_MAPPINGS = {
    "tpu_like": "tpu_like",
    "edge_tpu_like": "edge_tpu_like",
    "ascend_like": "ascend_like",
    "tesla_npu_like": "tesla_npu_like",
    "meta_prototype": "meta_prototype_like",
}


@functools.lru_cache(maxsize=1)
def zigzag_available() -> bool:
    """Return True if ZigZag (zigzag-dse) can be imported in this interpreter."""
    try:
        from zigzag.api import get_hardware_performance_zigzag  # noqa: F401
    except Exception:  # ImportError, or a broken install (e.g. missing six)
        return False
    return True


def _zigzag_inputs_dir() -> str:
    import zigzag

    return os.path.join(os.path.dirname(zigzag.__file__), "inputs")


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def layer_to_zigzag_workload(layer: dict, layer_id: int = 0) -> list[dict[str, Any]]:
    """Translate a codesign layer dict into ZigZag's workload format (list of one layer).

    ``layer`` has keys name, C, K, H, W (input size), R, S (kernel rows, cols),
    stride, depthwise; optional ``padding`` (int or (pad_h, pad_w)).
    """
    C, K = int(layer["C"]), int(layer["K"])
    H, W = int(layer["H"]), int(layer["W"])
    R, S = int(layer["R"]), int(layer["S"])
    sh, sw = _pair(layer.get("stride", 1))
    ph, pw = _pair(layer["padding"]) if layer.get("padding") is not None else (R // 2, S // 2)
    OY = (H + 2 * ph - R) // sh + 1
    OX = (W + 2 * pw - S) // sw + 1
    if bool(layer.get("depthwise", False)):
        if K % C:
            raise ValueError(f"depthwise layer {layer.get('name')}: K={K} not a multiple of C={C}")
        groups, k_per_group, c_per_group = C, K // C, 1
    else:
        groups, k_per_group, c_per_group = 1, K, C
    return [
        {
            "id": layer_id,
            "name": str(layer.get("name", f"layer{layer_id}")),
            "operator_type": "Conv",
            "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
            "dimension_relations": [f"ix={sw}*ox+1*fx", f"iy={sh}*oy+1*fy"],
            "loop_dims": ["B", "K", "G", "OX", "OY", "C", "FX", "FY"],
            "loop_sizes": [1, k_per_group, groups, OX, OY, c_per_group, S, R],
            "operand_precision": {"W": 8, "I": 8, "O": 16, "O_final": 8},
            # Both operands come from outside the workload (first layer): constant.
            "operand_source": {"W": layer_id, "I": layer_id},
            "pr_loop_dims": ["IX", "IY"],
            "pr_loop_sizes": [W, H],
            "padding": [[pw, pw], [ph, ph]],
        }
    ]


def _resolve_hw_and_mapping(hardware: str, tmpdir: str) -> tuple[str, str]:
    """Return (accelerator yaml, mapping yaml) paths for a shipped name or a path."""
    inputs = _zigzag_inputs_dir()
    if hardware.endswith(".yaml"):
        hw_path, hw_name = hardware, os.path.splitext(os.path.basename(hardware))[0]
    else:
        hw_path, hw_name = os.path.join(inputs, "hardware", hardware + ".yaml"), hardware
    if not os.path.isfile(hw_path):
        shipped = sorted(f[:-5] for f in os.listdir(os.path.join(inputs, "hardware")))
        raise FileNotFoundError(f"ZigZag hardware {hardware!r} not found; shipped: {shipped}")
    if hw_name in _SHIPPED_MAPPINGS:
        return hw_path, os.path.join(inputs, "mapping", _SHIPPED_MAPPINGS[hw_name] + ".yaml")
    # No shipped mapping: only operand links, ZigZag generates the spatial mapping.
    mapping_path = os.path.join(tmpdir, "mapping.yaml")
    with open(mapping_path, "w", encoding="utf-8") as f:
        f.write("- name: default\n  memory_operand_links:\n    O: O\n    W: I2\n    I: I1\n")
    return hw_path, mapping_path


@contextlib.contextmanager
def _quiet_zigzag():
    """Silence ZigZag's INFO/WARNING logging and stdout, restoring logging after."""
    root = logging.getLogger()
    zz = logging.getLogger("zigzag")
    saved_handlers, saved_level, saved_zz_level = list(root.handlers), root.level, zz.level
    zz.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for h in list(root.handlers):
            if h not in saved_handlers:  # added by zigzag's logging.basicConfig
                root.removeHandler(h)
        root.setLevel(saved_level)
        zz.setLevel(saved_zz_level)


def run_zigzag_layer(
    layer: dict,
    hardware: str = DEFAULT_HARDWARE,
    *,
    lpf_limit: int = DEFAULT_LPF_LIMIT,
    opt: str = "latency",
) -> dict:
    """Run ZigZag on one conv layer and return its cost.

    ``layer``: dict with name, C, K, H, W (input), R, S, stride, depthwise.
    ``hardware``: a shipped example accelerator name (``tpu_like``,
    ``edge_tpu_like``, ``ascend_like``, ``tesla_npu_like``, ``meta_prototype``,
    ``eyeriss_like``, ...) or a path to an accelerator yaml.

    Returns {"cycles", "energy_pj", "seconds", "hardware", "spatial_utilization"}.
    Requires ZigZag to be importable (see :func:`zigzag_available`).
    """
    import yaml  # a zigzag-dse dependency
    from zigzag.api import get_hardware_performance_zigzag

    tmpdir = tempfile.mkdtemp(prefix="zigzag_")
    try:
        hw_path, mapping_path = _resolve_hw_and_mapping(hardware, tmpdir)
        workload_path = os.path.join(tmpdir, "workload.yaml")
        with open(workload_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(layer_to_zigzag_workload(layer), f, sort_keys=False)
        with _quiet_zigzag():
            t0 = time.perf_counter()
            energy, latency, cmes = get_hardware_performance_zigzag(
                workload_path,
                hw_path,
                mapping_path,
                opt=opt,
                dump_folder=os.path.join(tmpdir, "out"),
                lpf_limit=lpf_limit,
                loma_show_progress_bar=False,
            )
            seconds = time.perf_counter() - t0
        util = None
        try:  # per-layer CME sits in the extra info of the cumulative one
            util = float(cmes[0][1][0][0].mac_spatial_utilization)
        except Exception:
            pass
        return {
            "cycles": float(latency),
            "energy_pj": float(energy),
            "seconds": seconds,
            "hardware": os.path.splitext(os.path.basename(hw_path))[0],
            "spatial_utilization": util,
        }
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def run_zigzag_layers_subprocess(
    layers: list[dict],
    hardware: str = DEFAULT_HARDWARE,
    python: str = DEFAULT_PEERS_PYTHON,
    timeout: float = 1800.0,
) -> list[dict]:
    """Run :func:`run_zigzag_layer` on each layer in another interpreter (the peers venv).

    For use from the main environment, where zigzag is not installed.  The
    layers run one after another in a single child process, so ``import
    zigzag`` is paid once and is not in any layer's ``seconds``.
    """
    payload = json.dumps({"hardware": hardware, "layers": layers})
    proc = subprocess.run(
        [python, os.path.abspath(__file__)],
        input=payload,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peers_python_has_zigzag(python: str = DEFAULT_PEERS_PYTHON) -> bool:
    """True if ``python`` exists and can import zigzag.api (checked in a child process)."""
    if not os.path.exists(python):
        return False
    try:
        r = subprocess.run(
            [python, "-c", "import zigzag.api"], capture_output=True, timeout=120
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0


def _main() -> None:
    """CLI: read {"hardware": ..., "layers": [...]} JSON on stdin, print a JSON list."""
    req = json.load(sys.stdin)
    hardware = req.get("hardware", DEFAULT_HARDWARE)
    results = []
    for layer in req["layers"]:
        res = run_zigzag_layer(layer, hardware)
        res["name"] = layer.get("name")
        results.append(res)
    print(json.dumps(results))


if __name__ == "__main__":
    _main()
