"""The analytical cost model: SCALE-Sim agreement, properties, the paper's layer findings, bad input."""

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cost_models import (DATAFLOWS, Accelerator, Layer, Workload, conv, evaluate, evaluate_batch, fc,
                         gbps_to_bytes_per_cycle, grid, pool)
from cost_models.dispatch import SPLIT_FROM_EVALUATIONS
from cost_models.energy import ENERGY_TABLES
from cost_models.physics import TILING_TIME_TOLERANCE
from cost_models.scalesim import (FormatError, format_config, format_topology, parse_config, parse_topology,
                                  read_topology)

REFERENCE = Path(__file__).resolve().parents[1] / "experiments" / "scalesim_reference"


def recorded_rows(mode):
    with open(REFERENCE / "recorded.csv") as handle:
        return [row for row in csv.DictReader(handle) if row["bandwidth_mode"] == mode and row["status"] == "ok"]


def scalesim_accelerator(row):
    kb = sum(float(row[k]) for k in ("ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb"))
    return Accelerator(rows=int(row["array_h"]), cols=int(row["array_w"]), dataflow=row["dataflow"] + "_systolic",
                       gb_bytes=int(kb * 1024), dram_bw=float(row["bandwidth"] or 10), dram_latency=0,
                       mac_bits=8, rf_bytes=1)


def test_systolic_compute_cycles_equal_recorded_scalesim():
    layers = {layer.name: layer for layer in read_topology(REFERENCE / "layers.csv")}
    rows = recorded_rows("CALC")
    assert len(rows) >= 100
    wrong = []
    for row in rows:
        costs = evaluate_batch(Workload((layers[row["layer"]],)), [scalesim_accelerator(row)], compute_only=True)
        ours, theirs = float(costs.compute_cycles[0]), float(row["compute_cycles"])
        if ours != theirs:
            wrong.append((row["layer"], row["config"], ours, theirs))
    assert not wrong, f"{len(wrong)} of {len(rows)} rows differ: {wrong[:3]}"


@settings(max_examples=150, deadline=None)
@given(C=st.integers(1, 512), K=st.integers(1, 512), H=st.integers(1, 56), R=st.sampled_from([1, 3, 5, 7]),
       stride=st.integers(1, 3), sides=st.tuples(st.integers(1, 200), st.integers(1, 200)), transposed=st.booleans(),
       dataflow=st.sampled_from(["os", "ws", "is"]))
def test_systolic_compute_cycles_are_scalesims_integer_arithmetic(C, K, H, R, stride, sides, transposed, dataflow):
    """Folds are exact integer ceil-divisions for any array side (7, 14, 28 ... included, whose reciprocals
    are inexact in float32), in both orientations of the array and every SCALE-Sim dataflow: the compute
    cycles are check_formulas.py's integer formula, exactly while they stay below float32's 2**24."""
    import sys
    sys.path.insert(0, str(REFERENCE))
    from check_formulas import compute_cycles

    H = max(H, R)
    rows, cols = sides[::-1] if transposed else sides
    layer = conv("l", C, K, H, R=R, stride=stride, w_bits=8, a_bits=8)
    pixels, window = ((H - R) // stride + 1) ** 2, C * R * R
    sr, sc, t = {"os": (pixels, K, window), "ws": (window, K, pixels), "is": (window, pixels, K)}[dataflow]
    accelerator = Accelerator(rows=rows, cols=cols, dataflow=dataflow + "_systolic", mac_bits=8)
    ours = float(evaluate_batch(Workload((layer,)), [accelerator], compute_only=True).compute_cycles[0])
    theirs = compute_cycles(sr, sc, t, rows, cols, dataflow)
    assert ours == theirs if theirs < 2 ** 24 else ours == pytest.approx(theirs, rel=2 ** -23)


@settings(max_examples=300, deadline=None)
@given(numerators=st.lists(st.integers(0, 2 ** 24 - 1), min_size=1, max_size=64), divisor=st.integers(1, 4096))
def test_ceil_and_floor_division_are_exact_for_a_divisor_shared_by_a_batch(numerators, divisor):
    """The case XLA rewrites as a multiplication by the reciprocal (one divisor for many numerators)."""
    import jax

    from cost_models.physics import ceil_div, floor_div
    a = np.asarray(numerators, np.float32)
    b = np.float32(divisor)
    exact = np.asarray(numerators, np.int64)
    assert np.array_equal(np.asarray(jax.jit(ceil_div)(a, b)), -(-exact // divisor))
    assert np.array_equal(np.asarray(jax.jit(floor_div)(a, b)), exact // divisor)


# --- properties -----------------------------------------------------------------------------

@st.composite
def layers(draw):
    kind = draw(st.sampled_from(["conv", "depthwise", "fc"]))
    density = draw(st.floats(0.1, 1.0))
    bits = draw(st.sampled_from([4, 8, 16]))
    if kind == "fc":
        return fc("l", draw(st.integers(1, 2048)), draw(st.integers(1, 1024)), w_density=density, w_bits=bits, a_bits=bits)
    C = draw(st.integers(1, 256))
    H = draw(st.integers(1, 64))
    R = draw(st.sampled_from([1, 3, 5, 7]))
    padding = R // 2
    stride = draw(st.integers(1, 2))
    if kind == "depthwise":
        return conv("l", C, C, H, R=R, padding=padding, stride=stride, groups=C, w_density=density)
    return conv("l", C, draw(st.integers(1, 256)), H, R=R, padding=padding, stride=stride, w_density=density,
                w_bits=bits, a_bits=bits)


accelerators = st.builds(
    Accelerator,
    rows=st.sampled_from([4, 8, 16, 32, 64]),
    cols=st.sampled_from([4, 8, 16, 32, 64]),
    dataflow=st.sampled_from(["ws", "os", "rs", "os_systolic", "ws_systolic", "is_systolic", "flex"]),
    rf_bytes=st.sampled_from([2, 16, 64]),
    gb_bytes=st.sampled_from([4096, 65536, 1 << 20]),
    dram_bw=st.floats(0.5, 64.0),
    dram_latency=st.floats(0.0, 200.0),
    mac_bits=st.sampled_from([8, 16]),
    zero_skip=st.booleans(),
    energy_table=st.sampled_from(sorted(ENERGY_TABLES)),
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(layer=layers(), acc=accelerators)
def test_cycles_bounded_below_by_compute_and_bandwidth(layer, acc):
    row = evaluate(Workload((layer,)), acc).layers[0]
    assert row["cycles"] >= row["macs"] / acc.pes * (1 - 1e-5)
    assert row["cycles"] >= row["dram_bytes"] / acc.dram_bw * (1 - 1e-5)
    assert row["cycles"] >= row["compute_cycles"] * (1 - 1e-6)


@SETTINGS
@given(layer=layers(), acc=accelerators)
def test_energy_at_least_the_macs_and_utilization_in_unit_interval(layer, acc):
    row = evaluate(Workload((layer,)), acc).layers[0]
    mac_pj = ENERGY_TABLES[acc.energy_table]["mac"] * (acc.mac_bits / 16) ** 2
    assert row["energy_pj"] >= row["macs"] * mac_pj * (1 - 1e-5)
    assert row["macs"] >= layer.macs * layer.w_density * (1 - 1e-5)
    assert 0.0 < row["utilization"] <= 1.0 + 1e-6


@SETTINGS
@given(layer=layers(), acc=accelerators, factor=st.floats(1.0, 16.0))
def test_more_dram_bandwidth_never_slows_a_layer(layer, acc, factor):
    slow = evaluate(Workload((layer,)), acc).total["cycles"]
    fast = evaluate(Workload((layer,)), acc.replace(dram_bw=acc.dram_bw * factor)).total["cycles"]
    # Tilings within TILING_TIME_TOLERANCE of the fastest count as equally fast (least traffic wins).
    assert fast <= slow * (1 + TILING_TIME_TOLERANCE + 1e-5)


@SETTINGS
@given(layer=layers(), acc=accelerators, sparser=st.floats(0.05, 1.0))
def test_more_zero_weights_never_slow_os_with_skipping(layer, acc, sparser):
    acc = acc.replace(dataflow="os", zero_skip=True)
    dense = evaluate(Workload((layer,)), acc).total["cycles"]
    sparse_layer = Layer(**{**layer.to_dict(), "w_density": layer.w_density * sparser})
    sparse = evaluate(Workload((sparse_layer,)), acc).total["cycles"]
    assert sparse <= dense * (1 + TILING_TIME_TOLERANCE + 1e-5)


def test_batched_result_equals_per_configuration_result():
    # A batch this large is split by dataflow set (flex sets included) and run in chunks; a single
    # accelerator runs the one program that computes every dataflow. Both must agree exactly.
    workload = Workload((conv("a", 3, 32, 32, R=3, padding=1), conv("b", 32, 32, 32, R=3, padding=1, groups=32),
                         conv("c", 32, 64, 16), pool("p", 64, 16, R=2, stride=2), fc("d", 4096, 10)))
    accs = grid(Accelerator(zero_skip=True), rows=[8, 32], cols=[16, 32], dataflow=["ws", "os", "flex", "is_systolic"],
                gb_bytes=[8192, 1 << 20], mac_bits=[8, 16], rf_bytes=[4, 16], dram_bw=[4.0, 64.0])
    accs += [acc.replace(flex_set=("ws", "os", "rs")) for acc in accs if acc.dataflow == "flex"]
    assert len(accs) * 8 >= SPLIT_FROM_EVALUATIONS  # 5 layers pad to a bucket of 8
    batch = evaluate_batch(workload, accs)
    totals_only = evaluate_batch(workload, accs, per_layer=False)
    assert totals_only.layers is None
    np.testing.assert_allclose(totals_only.cycles, batch.cycles, rtol=1e-6)  # two programs: float32 rounding
    for i, acc in enumerate(accs):
        single = evaluate(workload, acc)
        np.testing.assert_allclose(batch.cycles[i], single.total["cycles"], rtol=1e-6)
        np.testing.assert_allclose(batch.energy_pj[i], single.total["energy_pj"], rtol=1e-6)
        assert [row["cycles"] for row in single.layers] == batch.layers.cycles[i].tolist()
        assert [row["dataflow"] for row in single.layers if row["kind"] != "pool"] == [
            DATAFLOWS[code] for code, layer in zip(batch.layers.dataflow[i], workload) if layer.kind != "pool"]


def test_many_networks_in_chunks_equal_each_network_alone():
    from cost_models import LayerArrays, costs_over_networks, stack

    workloads = [Workload((conv("a", 3, 8 * (i + 1), 32, R=3, padding=1), fc("b", 8 * (i + 1) * 32 * 32, 10)))
                 for i in range(3)]
    stacked = LayerArrays(*(np.stack(column) for column in zip(*(w.arrays() for w in workloads))))
    accs = grid(Accelerator(), rows=[8, 16], dataflow=["ws", "flex"])
    together = costs_over_networks(stacked, stack(accs))
    assert together.cycles.shape == (3, len(accs)) and together.layers.cycles.shape == (3, len(accs), 8)
    for i, workload in enumerate(workloads):
        alone = evaluate_batch(workload, accs)
        np.testing.assert_array_equal(together.cycles[i], alone.cycles)
        np.testing.assert_array_equal(together.layers.energy[i, :, :2], alone.layers.energy)


def test_ten_thousand_accelerators_for_a_thirty_layer_network_in_one_call():
    workload = Workload(tuple(conv(f"l{i}", 16 + 8 * i, 32 + 4 * i, 56 // (1 + i // 10), R=3, padding=1) for i in range(30)))
    accs = grid(Accelerator(), rows=list(range(4, 68, 4)), cols=list(range(4, 68, 4)),
                gb_bytes=[16384 * k for k in range(1, 41)], dataflow=["ws"])
    assert len(accs) == 10240
    costs = evaluate_batch(workload, accs)
    assert costs.cycles.shape == (10240,) and costs.layers.cycles.shape == (10240, 30)
    # Dense weights, no skipping: every accelerator executes exactly the workload's MACs, at most one per PE per cycle.
    np.testing.assert_allclose(costs.layers.macs, np.broadcast_to([layer.macs for layer in workload], (10240, 30)), rtol=1e-6)
    pes = np.asarray([acc.pes for acc in accs], np.float64)
    assert np.all(np.isfinite(costs.cycles)) and np.all(costs.cycles >= workload.macs / pes * (1 - 1e-6))


def test_cost_is_differentiable_in_dram_bandwidth():
    import jax

    from cost_models import costs_over_accelerators, stack

    workload = Workload((conv("big", 256, 256, 56, R=3, padding=1),))
    acc = Accelerator(gb_bytes=16384, dram_bw=4.0)
    params = stack(acc)
    grad = jax.grad(lambda bw: costs_over_accelerators(workload.arrays(), params._replace(dram_bw=bw)).cycles.sum())(
        params.dram_bw)
    # The layer is DRAM-bound (cycles = traffic / bandwidth + latencies), so d cycles / d bandwidth = -traffic / bw^2.
    row = evaluate(workload, acc).layers[0]
    assert row["cycles"] > row["compute_cycles"]
    assert grad[0] == pytest.approx(-row["dram_bytes"] / acc.dram_bw ** 2, rel=1e-6)


# --- Kwon et al. (DAC'18) layer-type findings on the Squeezelerator settings --------------------------

# Kwon et al. (DAC'18) give 16 GB/s and 100 cycles but no clock; 500 MHz is assumed (32 bytes per cycle).
SQUEEZELERATOR = Accelerator(rows=32, cols=32, rf_bytes=16, gb_bytes=128 * 1024, clock_mhz=500.0,
                             dram_bw=gbps_to_bytes_per_cycle(16, 500), dram_latency=100, mac_bits=16, zero_skip=True)


def cycles_on(layer, dataflow):
    return evaluate(Workload((layer.__class__(**{**layer.to_dict(), "w_density": 0.6}),)),
                    SQUEEZELERATOR.replace(dataflow=dataflow)).total["cycles"]


@pytest.mark.parametrize("layer", [
    conv("fire2_squeeze", 96, 16, 55), conv("fire9_expand1x1", 64, 256, 13),
    conv("mobilenet_pw2", 64, 128, 112), conv("mobilenet_pw13", 1024, 1024, 7),
])
def test_pointwise_layers_are_never_slower_on_ws(layer):
    # Large maps are DRAM-bound at batch 1 on 16 GB/s, where both dataflows tie.
    assert cycles_on(layer, "ws") <= cycles_on(layer, "os")


@pytest.mark.parametrize("layer", [conv("fire9_expand1x1", 64, 256, 13), conv("mobilenet_pw13", 1024, 1024, 7)])
def test_pointwise_layers_on_maps_smaller_than_the_array_are_faster_on_ws_by_the_papers_range(layer):
    # Kwon et al., DAC'18: 1x1 layers are 1.4x to 7.0x faster on WS; OS idles the PEs the map does not cover.
    assert 1.4 <= cycles_on(layer, "os") / cycles_on(layer, "ws") <= 7.0 * 1.1


@pytest.mark.parametrize("layer", [
    conv("mobilenet_dw1", 32, 32, 112, R=3, padding=1, groups=32),
    conv("mobilenet_dw4", 256, 256, 28, R=3, padding=1, groups=256),
    conv("mobilenet_dw13", 1024, 1024, 7, R=3, padding=1, groups=1024),
])
def test_depthwise_layers_are_at_least_ten_times_faster_on_os(layer):
    assert cycles_on(layer, "ws") >= 10 * cycles_on(layer, "os")


@pytest.mark.parametrize("layer", [
    conv("squeezenet_conv1", 3, 96, 224, R=7, stride=2), conv("mobilenet_conv1", 3, 32, 224, R=3, stride=2, padding=1),
    conv("squeezenext_conv1", 3, 64, 227, R=7, stride=2),
])
def test_first_conv_layer_is_faster_on_os(layer):
    assert cycles_on(layer, "os") < cycles_on(layer, "ws")


# --- SCALE-Sim files ------------------------------------------------------------------------

def test_topology_round_trip_keeps_scalesim_meaning():
    workload = read_topology(REFERENCE / "layers.csv")
    conv1 = workload.layers[0]
    assert (conv1.P, conv1.Q) == (17, 17)  # ceil((38 - 7 + 2) / 2), SCALE-Sim's convention
    dp = next(layer for layer in workload if layer.name == "DP1")
    assert dp.kind == "depthwise" and dp.groups == dp.C == dp.K == 32
    again = parse_topology(format_topology(workload))
    assert [l.macs for l in again] == [l.macs for l in workload]
    assert [(l.P, l.Q) for l in again] == [(l.P, l.Q) for l in workload]


def test_written_topology_of_padded_layers_gives_same_outputs():
    workload = Workload((conv("c", 3, 16, 32, R=3, padding=1, stride=2), conv("d", 16, 16, 16, R=3, padding=1, groups=16)))
    again = parse_topology(format_topology(workload))
    assert [(l.P, l.Q, l.macs) for l in again] == [(l.P, l.Q, l.macs) for l in workload]


def test_config_round_trip():
    acc = Accelerator(rows=16, cols=8, dataflow="is_systolic", gb_bytes=3 * 64 * 1024, dram_bw=10.0)
    config = parse_config(format_config(acc))
    assert config.accelerator.rows == 16 and config.accelerator.cols == 8
    assert config.accelerator.dataflow == "is_systolic"
    assert config.accelerator.gb_bytes == acc.gb_bytes and config.accelerator.dram_bw == 10.0
    assert not config.calc_bandwidth
    assert parse_config(format_config(acc, calc_bandwidth=True)).calc_bandwidth


def test_accelerator_json_round_trip_is_exact_and_hashable():
    acc = Accelerator(dataflow="flex", flex_set=("os", "ws"), dram_bw=12.5, zero_skip=True)
    again = Accelerator.from_json(acc.to_json())
    assert again == acc and hash(again) == hash(acc)
    workload = Workload((conv("a", 3, 8, 8, R=3),))
    assert Workload.from_json(workload.to_json()) == workload


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, field", [
    (dict(C=-3), "'C'"), (dict(K=0), "'K'"), (dict(H=0), "'H'"), (dict(w_density=0.0), "'w_density'"),
    (dict(w_bits=64), "'w_bits'"), (dict(kind="lstm"), "'kind'"), (dict(R=9), "filter"),
])
def test_bad_layer_fields_are_named(kwargs, field):
    base = dict(name="x", kind="conv", C=3, K=8, H=8, W=8, R=3, S=3)
    with pytest.raises(ValueError, match=field):
        Layer(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs, field", [
    (dict(rows=0), "'rows'"), (dict(cols=-1), "'cols'"), (dict(dataflow="nlr"), "'dataflow'"),
    (dict(dram_bw=0.0), "'dram_bw'"), (dict(flex_set=("ws", "xx")), "'flex_set'"), (dict(energy_table="x"), "'energy_table'"),
])
def test_bad_accelerator_fields_are_named(kwargs, field):
    with pytest.raises(ValueError, match=field) as info:
        Accelerator(**kwargs)
    if field == "'dataflow'":
        assert "ws, os, rs, os_systolic, ws_systolic, is_systolic, flex" in str(info.value)


def test_empty_workload_is_rejected():
    with pytest.raises(ValueError, match="'layers'"):
        Workload(())


@pytest.mark.parametrize("text, message", [
    ("Layer name, a,\nConv, 8, 8, 3, 3, 4,\n", "line 2: expected 8 fields"),
    ("Layer name,\nConv, 8, eight, 3, 3, 4, 4, 1,\n", "line 2: field 'IFMAP Width'"),
    ("Layer name,\nConv, 8, 8, 3, 3, 0, 4, 1,\n", "line 2: field 'Channels'"),
    ("Layer name,\nConv, 2, 2, 3, 3, 4, 4, 1,\n", "line 2: filter 3x3 is larger"),
])
def test_malformed_topology_lines_are_named(text, message):
    with pytest.raises(FormatError, match=message):
        parse_topology(text)


def test_malformed_config_lines_are_named():
    good = format_config(Accelerator(dataflow="os_systolic"))
    with pytest.raises(FormatError, match=r"line \d+: field 'ArrayHeight' must be a number"):
        parse_config(good.replace("ArrayHeight = 32", "ArrayHeight = big"))
    with pytest.raises(FormatError, match="'Dataflow' must be one of os, ws, is"):
        parse_config(good.replace("Dataflow = os", "Dataflow = rs"))
    with pytest.raises(FormatError, match="missing 'ArrayWidth'"):
        parse_config(good.replace("ArrayWidth = 32\n", ""))


def test_vector_layers_are_reported_on_the_simd_unit():
    from cost_models import eltwise, pool

    report = evaluate(Workload((pool("p", 16, 32), eltwise("e", 16, 16))), Accelerator(dataflow="ws"))
    assert [row["dataflow"] for row in report.layers] == ["simd", "simd"]
    # 16 x 16 x 16 outputs of 2x2 windows = 16,384 ops, and 16 x 16 x 16 = 4,096 adds, on cols = 32 lanes.
    assert [row["accesses_mac"] for row in report.layers] == [16384, 4096]
    assert [row["compute_cycles"] for row in report.layers] == [512, 128]
    assert [row["utilization"] for row in report.layers] == [1.0, 1.0]
    assert [row["macs"] for row in report.layers] == [0, 0]


# --- energy that depends on the memory ----------------------------------------------------------------------

def test_a_sized_global_buffer_costs_horowitzs_sram_energies_per_access():
    """horowitz45_sram: 2.5 pJ per 16-bit access at 8 KiB as horowitz45, and Horowitz's 64-bit SRAM reads (8 KB
    10 pJ, 32 KB 20 pJ, 1 MB 100 pJ) scaled alike at 32 KiB and 1 MiB; every other level as horowitz45."""
    workload = Workload((conv("a", 32, 64, 28, R=3, padding=1, w_bits=16, a_bits=16),))
    per_access = {}
    for size in (8 * 1024, 32 * 1024, 1024 * 1024):
        sized, flat = (evaluate(workload, Accelerator(rows=16, cols=16, dataflow="ws", gb_bytes=size, energy_table=t))
                       for t in ("horowitz45_sram", "horowitz45"))
        row, same = sized.layers[0], flat.layers[0]
        per_access[size] = row["energy_gb_pj"] / row["accesses_gb"]
        assert per_access[size] == pytest.approx(same["energy_gb_pj"] / same["accesses_gb"]
                                                 * {8192: 1, 32768: 2, 1048576: 10}[size], rel=1e-5)
        for level in ("mac", "rf", "noc", "dram"):
            assert row[f"energy_{level}_pj"] == same[f"energy_{level}_pj"]
    assert per_access[8 * 1024] == pytest.approx(2.5, rel=1e-6)


def test_energy_is_differentiable_in_the_buffer_size_of_a_sized_table():
    import jax
    import jax.numpy as jnp

    from cost_models import costs_over_accelerators, stack

    workload = Workload((conv("a", 32, 64, 28, R=3, padding=1),))
    layers = workload.arrays()
    for table, sign in (("horowitz45_sram", 1.0), ("horowitz45", 0.0)):
        params = stack(Accelerator(dataflow="ws", gb_bytes=64 * 1024, energy_table=table))

        def energy(gb_bytes, params=params):
            return costs_over_accelerators(layers, params._replace(gb_bytes=gb_bytes)).energy_pj.sum()

        gradient = float(jax.grad(energy)(jnp.asarray(params.gb_bytes, jnp.float32))[0])
        assert np.isfinite(gradient) and np.sign(gradient) == sign  # a larger buffer costs more per access


def test_with_a_sized_buffer_the_energy_of_a_network_has_an_optimum_below_the_largest_buffer():
    from search_spaces.reference import reference_network

    workload = reference_network("squeezenet_v1_0").workload()
    sizes = [2 ** k * 1024 for k in range(2, 13)]  # 4 KiB to 4 MiB
    energy = {t: np.asarray(evaluate_batch(workload, [Accelerator(rows=16, cols=16, dataflow="ws", gb_bytes=s,
                                                                  energy_table=t) for s in sizes],
                                           per_layer=False).energy_pj) for t in ("horowitz45", "horowitz45_sram")}
    best = int(np.argmin(energy["horowitz45_sram"]))
    assert 0 < best < len(sizes) - 1
    assert energy["horowitz45_sram"][-1] > 1.5 * energy["horowitz45_sram"][best]  # 4 MiB costs well above it
    assert energy["horowitz45"][-1] < 1.5 * energy["horowitz45"].min()  # a flat table barely charges for it
