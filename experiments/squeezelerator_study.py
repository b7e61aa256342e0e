"""The Squeezelerator study (Kwon et al., DAC'18), recomputed on the cost model.

Pure functions behind ``experiments/squeezelerator.py`` and its tests:

* :func:`table1`: share of MACs by layer type for the six networks of the paper;
* :func:`table2`: speedup and energy saving of the per-layer WS/OS choice (``flex``)
  over WS-only and OS-only on the Squeezelerator preset with 40 % zero weights;
* :func:`layer_type_ratios`: how much faster the better dataflow runs each layer type
  (the paper's section 4.1.1 findings);
* :func:`squeezenext_effects` and :func:`codesign_outcome`: the SqueezeNext changes
  (first kernel 7x7 -> 5x5, blocks moved to later stages, register file 8 -> 16
  entries) and where they end up against SqueezeNet v1.0 and AlexNet.

The paper's own numbers (``PAPER_*``) are those the paper prints.
"""

from __future__ import annotations

from typing import Iterable, Mapping

from cost_models import Accelerator, Workload, evaluate
from cost_models.accelerator import gbps_to_bytes_per_cycle
from cost_models.evaluation import CostReport
from search_spaces.accelerators import PRESETS
from search_spaces.compression import CompressionPolicy
from search_spaces.networks import NetworkSpec, mac_shares, table1_types
from search_spaces.reference import SQUEEZENEXT_VARIANTS, reference_network, squeezenext_variant

#: The six networks of Tables 1 and 2, by reference name.
NETWORKS = ("alexnet", "mobilenet_v1", "tiny_darknet", "squeezenet_v1_0", "squeezenet_v1_1", "squeezenext_23")
#: Weight sparsity the paper models (zero weights are skipped in OS mode).
WEIGHT_ZEROS = 0.4
#: Register-file entries of the Squeezelerator before and after co-design (16-bit entries).
RF_ENTRIES_BEFORE, RF_ENTRIES_AFTER = 8, 16
SINGLE_DATAFLOWS = ("ws", "os")
TABLE1_KEYS = ("conv1", "1x1", "FxF", "DW")
TABLE2_KEYS = ("speedup_vs_os", "speedup_vs_ws", "energy_saving_vs_os", "energy_saving_vs_ws")

PAPER_TABLE1 = {
    "alexnet": {"conv1": 20, "1x1": 0, "FxF": 69, "DW": 0},
    "mobilenet_v1": {"conv1": 1, "1x1": 95, "FxF": 0, "DW": 3},
    "tiny_darknet": {"conv1": 5, "1x1": 13, "FxF": 82, "DW": 0},
    "squeezenet_v1_0": {"conv1": 21, "1x1": 25, "FxF": 54, "DW": 0},
    "squeezenet_v1_1": {"conv1": 6, "1x1": 40, "FxF": 54, "DW": 0},
    "squeezenext_23": {"conv1": 16, "1x1": 44, "FxF": 40, "DW": 0},
}
PAPER_TABLE2 = {
    "alexnet": dict(zip(TABLE2_KEYS, (1.00, 1.19, -2, 6))),
    "mobilenet_v1": dict(zip(TABLE2_KEYS, (1.91, 6.35, 8, 6))),
    "tiny_darknet": dict(zip(TABLE2_KEYS, (1.14, 1.32, 0, 24))),
    "squeezenet_v1_0": dict(zip(TABLE2_KEYS, (1.26, 2.06, 6, 23))),
    "squeezenet_v1_1": dict(zip(TABLE2_KEYS, (1.34, 1.18, 8, 10))),
    "squeezenext_23": dict(zip(TABLE2_KEYS, (1.26, 2.44, 0, 20))),
}
#: Section 4.1.1 on the 32x32 array: layer type -> (faster dataflow, smallest and largest factor).
PAPER_LAYER_TYPES = {"1x1": ("ws", 1.4, 7.0), "conv1": ("os", 1.6, 6.3), "DW": ("os", 19.0, 96.0)}
#: Final SqueezeNext on the co-designed Squeezelerator against the originals: (speedup, energy ratio).
PAPER_CODESIGN = {"squeezenet_v1_0": (2.59, 2.25), "alexnet": (8.26, 7.5)}
#: Goal of the reproduction: every Table 2 speedup within this factor of the paper's.
SPEEDUP_TOLERANCE = 1.5


def accelerator(dataflow: str = "flex", rf_entries: int = RF_ENTRIES_BEFORE, clock_mhz: float | None = None) -> Accelerator:
    """The Squeezelerator preset with a given dataflow, register-file size (16-bit entries) and clock.

    The paper gives DRAM bandwidth in GB/s but no clock; changing the clock keeps 16 GB/s.
    """
    base = PRESETS["squeezelerator"]
    clock = base.clock_mhz if clock_mhz is None else float(clock_mhz)
    return base.replace(dataflow=dataflow, rf_bytes=2 * rf_entries, clock_mhz=clock,
                        dram_bw=gbps_to_bytes_per_cycle(16, clock))


def sparse_workload(spec: NetworkSpec) -> Workload:
    """The network's workload with 40 % zero weights in every layer, as the paper models it."""
    return spec.workload(compression=CompressionPolicy.uniform(prune_ratio=WEIGHT_ZEROS))


def table1(networks: Iterable[str] = NETWORKS) -> dict[str, dict[str, float]]:
    """Percent of MACs in conv1 / 1x1 / FxF / DW layers (FC layers make up the rest)."""
    shares = {name: mac_shares(reference_network(name)) for name in networks}
    return {name: {k: row[k] for k in TABLE1_KEYS} for name, row in shares.items()}


def dataflow_reports(spec: NetworkSpec, base: Accelerator | None = None) -> dict[str, CostReport]:
    """Cost reports of a network on WS-only, OS-only and the per-layer choice (``flex``)."""
    base = base or accelerator()
    workload = sparse_workload(spec)
    return {df: evaluate(workload, base.replace(dataflow=df)) for df in (*SINGLE_DATAFLOWS, "flex")}


def table2_row(reports: Mapping[str, CostReport]) -> dict[str, float]:
    """Speedups (x) and energy savings (%) of ``flex`` over each single dataflow."""
    flex = reports["flex"].total
    row = {}
    for df in SINGLE_DATAFLOWS:
        single = reports[df].total
        row[f"speedup_vs_{df}"] = single["cycles"] / flex["cycles"]
        row[f"energy_saving_vs_{df}"] = 100.0 * (1.0 - flex["energy_pj"] / single["energy_pj"])
    return {k: row[k] for k in TABLE2_KEYS}


def table2(networks: Iterable[str] = NETWORKS, base: Accelerator | None = None
           ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, CostReport]]]:
    """Table 2 rows by network, and the cost reports behind them."""
    reports = {name: dataflow_reports(reference_network(name), base) for name in networks}
    return {name: table2_row(r) for name, r in reports.items()}, reports


def compare_table2(ours: Mapping[str, Mapping[str, float]], tolerance: float = SPEEDUP_TOLERANCE) -> dict:
    """Ours against the paper: per speedup the ratio ours / paper and whether it is within ``tolerance``,
    plus the orderings the paper stresses (MobileNet gains most against WS; AlexNet least against OS)."""
    ratios = {name: {k: ours[name][k] / PAPER_TABLE2[name][k] for k in ("speedup_vs_os", "speedup_vs_ws")}
              for name in ours}
    within = {name: {k: 1.0 / tolerance <= r <= tolerance for k, r in row.items()} for name, row in ratios.items()}
    by_ws = sorted(ours, key=lambda n: ours[n]["speedup_vs_ws"])
    by_os = sorted(ours, key=lambda n: ours[n]["speedup_vs_os"])
    return {
        "ratios": ratios,
        "within": within,
        "misses": [(name, k) for name, row in within.items() for k, ok in row.items() if not ok],
        "most_vs_ws": by_ws[-1],
        "least_vs_ws": by_ws[0],
        "least_vs_os": by_os[0],
        "most_vs_os": by_os[-1],
    }


def layer_type_ratios(reports: Mapping[str, Mapping[str, CostReport]]) -> dict[str, list[tuple[float, str, str]]]:
    """Per layer type of section 4.1.1, the factor by which the paper's favoured dataflow is faster.

    Values are (slower cycles / faster cycles, network, layer); a factor below 1 means the
    other dataflow won that layer.
    """
    out: dict[str, list[tuple[float, str, str]]] = {kind: [] for kind in PAPER_LAYER_TYPES}
    for name, by_df in reports.items():
        ws, os_ = by_df["ws"], by_df["os"]
        for kind, w, o in zip(table1_types(ws.workload.layers), ws.layers, os_.layers):
            if kind not in PAPER_LAYER_TYPES:
                continue
            faster, slower = (w, o) if PAPER_LAYER_TYPES[kind][0] == "ws" else (o, w)
            out[kind].append((slower["cycles"] / faster["cycles"], name, w["layer"]))
    return {kind: sorted(v) for kind, v in out.items()}


def _change(before: dict, after: dict) -> dict[str, float]:
    return {"latency_change_pct": 100.0 * (after["latency_s"] / before["latency_s"] - 1.0),
            "energy_change_pct": 100.0 * (after["energy_pj"] / before["energy_pj"] - 1.0)}


def variant_reports(rf_entries: int = RF_ENTRIES_BEFORE) -> dict[str, CostReport]:
    """Every SqueezeNext variant on the flex Squeezelerator with ``rf_entries`` register entries."""
    acc = accelerator(rf_entries=rf_entries)
    return {v: evaluate(sparse_workload(squeezenext_variant(v)), acc) for v in SQUEEZENEXT_VARIANTS}


def squeezenext_effects(before: Mapping[str, CostReport] | None = None,
                        after: Mapping[str, CostReport] | None = None) -> list[dict]:
    """Latency and energy change of each SqueezeNext change on the flex Squeezelerator.

    ``before`` / ``after``: :func:`variant_reports` with 8 and 16 register entries.
    """
    before = before or variant_reports(RF_ENTRIES_BEFORE)
    after = after or variant_reports(RF_ENTRIES_AFTER)
    steps = [
        ("first layer 7x7 -> 5x5", "v1 -> v2", before["v1"], before["v2"]),
        ("blocks moved from early to late stages", "v2 -> v5", before["v2"], before["v5"]),
        (f"register file {RF_ENTRIES_BEFORE} -> {RF_ENTRIES_AFTER} entries", "v5", before["v5"], after["v5"]),
    ]
    return [{"change": change, "variants": variants, **_change(a.total, b.total),
             "latency_ms": (a.total["latency_s"] * 1e3, b.total["latency_s"] * 1e3),
             "energy_uj": (a.total["energy_pj"] / 1e6, b.total["energy_pj"] / 1e6)}
            for change, variants, a, b in steps]


def codesign_outcome(final: CostReport | None = None,
                     originals: Mapping[str, CostReport] | None = None) -> dict[str, dict[str, float]]:
    """The final SqueezeNext (v5, 16 register entries) against SqueezeNet v1.0 and AlexNet on the original
    Squeezelerator (8 entries): speedup and energy ratio, beside the paper's.

    ``final``: v5's report on the 16-entry flex Squeezelerator; ``originals``: the flex
    reports of the two networks (Table 2's); each is computed when not given.
    """
    if final is None:
        final = evaluate(sparse_workload(squeezenext_variant("v5")), accelerator(rf_entries=RF_ENTRIES_AFTER))
    originals = originals or {name: evaluate(sparse_workload(reference_network(name)), accelerator())
                              for name in PAPER_CODESIGN}
    out = {}
    for name, (paper_speedup, paper_energy) in PAPER_CODESIGN.items():
        base = originals[name].total
        out[name] = {"speedup": base["latency_s"] / final.total["latency_s"],
                     "energy_ratio": base["energy_pj"] / final.total["energy_pj"],
                     "paper_speedup": paper_speedup, "paper_energy_ratio": paper_energy}
    return out


def time_shares(report: CostReport) -> dict[str, float]:
    """Percent of a report's cycles by Table 1 layer type (and ``other`` for pooling, additions)."""
    shares: dict[str, float] = {}
    total = report.total["cycles"]
    for kind, row in zip(table1_types(report.workload.layers), report.layers):
        key = kind or "other"
        shares[key] = shares.get(key, 0.0) + 100.0 * row["cycles"] / total
    return shares
