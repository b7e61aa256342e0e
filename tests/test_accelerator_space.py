"""The accelerator search space: draws, Optuna sampling, grids, presets, bad input."""

import math

import numpy as np
import optuna
import pytest

from cost_models import (ENERGY_TABLES, Accelerator, Workload, conv, evaluate, evaluate_batch, gbps_to_bytes_per_cycle,
                         stack)
from search_spaces.accelerators import DEFAULT_ACCELERATOR_SPACE, PRESETS, AcceleratorSpace, GridPoints, preset

optuna.logging.set_verbosity(optuna.logging.WARNING)

WORKLOAD = Workload((conv("a", 3, 16, 32, R=3, padding=1),))

SMALL = AcceleratorSpace(rows=(8, 16), cols=(8, 16), dataflows=("ws", "os", "flex"), rf_bytes=(16,),
                         gb_kib=(64, 128), dram_gbps=(16.0,), mac_bits=(16,), zero_skip=(False, True))


def in_space(space, a):
    return (a.rows in space.rows and a.cols in space.cols and a.dataflow in space.dataflows
            and a.flex_set == space.flex_set and a.rf_bytes in space.rf_bytes
            and a.gb_bytes // 1024 in space.gb_kib and a.gb_bytes % 1024 == 0
            and any(math.isclose(a.dram_bw, gbps_to_bytes_per_cycle(g, a.clock_mhz)) for g in space.dram_gbps)
            and a.dram_latency in space.dram_latency and a.mac_bits in space.mac_bits
            and a.zero_skip in space.zero_skip and a.clock_mhz in space.clock_mhz
            and a.energy_table in space.energy_table)


def test_draws_are_valid_cover_the_choices_evaluate_and_round_trip_json():
    space = DEFAULT_ACCELERATOR_SPACE
    rng = np.random.default_rng(1)
    draws = [space.draw(rng) for _ in range(1000)]
    assert all(isinstance(a, Accelerator) and in_space(space, a) for a in draws)
    assert all(Accelerator.from_json(a.to_json()) == a for a in draws)
    # uniform over the choices: every value of every field shows up in 1,000 draws
    assert {a.rows for a in draws} == set(space.rows)
    assert {a.dataflow for a in draws} == set(space.dataflows)
    assert {a.gb_bytes for a in draws} == {k * 1024 for k in space.gb_kib}
    assert {a.zero_skip for a in draws} == {False, True}
    counts = np.bincount([space.dataflows.index(a.dataflow) for a in draws])
    assert counts.min() > 250  # ~333 each
    # the same seed draws the same accelerators
    rng2 = np.random.default_rng(1)
    assert [space.draw(rng2) for _ in range(20)] == draws[:20]
    for a in draws[:3]:
        total = evaluate(WORKLOAD, a).total
        assert total["cycles"] >= WORKLOAD.macs / a.pes  # no faster than every PE busy on every cycle
        assert np.isfinite(total["energy_pj"]) and total["energy_pj"] > 0


def test_optuna_sampling_is_reproducible_from_trial_params():
    space = DEFAULT_ACCELERATOR_SPACE
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        trial.suggest_int("net.width", 1, 4)  # other parameters of a joint trial are ignored
        accel = space.sample(trial)
        assert space.from_params(trial.params) == accel
        assert in_space(space, accel)
        seen.add(accel)
        study.tell(trial, float(accel.pes))
    assert len(seen) > 20
    # fields with one choice (dram_latency, clock_mhz, energy_table) are not suggested
    expected = {"accel.rows", "accel.cols", "accel.dataflow", "accel.rf_bytes", "accel.gb_kib",
                "accel.dram_gbps", "accel.mac_bits", "accel.zero_skip"}
    assert set(space.param_names) == expected
    assert set(study.trials[0].params) == expected | {"net.width"}
    # a stored (frozen) trial rebuilds the same accelerator too
    best = study.best_trial
    assert space.from_params(best.params).pes == best.value


def test_from_params_rejects_missing_foreign_and_unknown_values():
    space = SMALL
    params = {"accel.rows": 8, "accel.cols": 16, "accel.dataflow": "os", "accel.gb_kib": 64, "accel.zero_skip": True}
    a = space.from_params(params)
    assert (a.rows, a.cols, a.dataflow, a.gb_bytes, a.zero_skip, a.mac_bits) == (8, 16, "os", 65536, True, 16)
    # a fixed field's parameter may be given if it is the field's value
    assert space.from_params({**params, "accel.mac_bits": 16}) == a
    with pytest.raises(ValueError, match=r"accelerator space: parameter 'accel\.cols' is missing.*\(8, 16\)"):
        space.from_params({k: v for k, v in params.items() if k != "accel.cols"})
    with pytest.raises(ValueError, match=r"accelerator space: parameter 'accel\.rows'=32 is not one of \(8, 16\)"):
        space.from_params({**params, "accel.rows": 32})
    with pytest.raises(ValueError, match="accel.zero_skip"):  # 1 is not True
        space.from_params({**params, "accel.zero_skip": 1})
    with pytest.raises(ValueError, match=r"accel\.mac_bits'=8 is not one of \(16,\)"):
        space.from_params({**params, "accel.mac_bits": 8})
    with pytest.raises(ValueError, match="accelerator space: unknown parameter.*accel.bogus"):
        space.from_params({**params, "accel.bogus": 1})


def test_grid_is_the_full_product_or_a_distinct_random_subset_and_evaluates_in_one_batch():
    default = DEFAULT_ACCELERATOR_SPACE
    everything = default.grid()
    assert default.size == len(everything) == len(set(everything)) == 4 * 4 * 3 * 3 * 4 * 3 * 2 * 2
    assert all(in_space(default, a) for a in everything)
    sub = default.grid(limit=50, rng=np.random.default_rng(0))
    assert len(sub) == 50 and len(set(sub)) == 50 and set(sub) <= set(everything)
    assert sub == sorted(sub, key=everything.index)  # still in product order
    assert default.grid(limit=50, rng=np.random.default_rng(0)) == sub
    assert default.grid(limit=50, rng=np.random.default_rng(1)) != sub
    # the squeezelerator preset is a point of the default space
    assert PRESETS["squeezelerator"].replace(name="accelerator") in everything

    full = SMALL.grid()
    assert len(full) == SMALL.size == 2 * 2 * 3 * 2 * 2 == len(set(full))
    assert SMALL.grid(limit=10_000) == full
    costs = evaluate_batch(WORKLOAD, full)
    assert costs.cycles.shape == (len(full),)
    assert np.all(costs.cycles >= WORKLOAD.macs / np.array([a.pes for a in full]))
    # bigger arrays are never slower on this layer at equal everything else
    i_small = full.index(AcceleratorSpace(**{**SMALL.axes, "rows": (8,), "cols": (8,), "dataflows": ("ws",),
                                             "gb_kib": (128,), "zero_skip": (False,)}).grid()[0])
    i_big = full.index(full[i_small].replace(rows=16, cols=16))
    assert costs.cycles[i_big] <= costs.cycles[i_small]



@pytest.mark.parametrize("space", [
    DEFAULT_ACCELERATOR_SPACE, SMALL,
    AcceleratorSpace(rows=(7, 12, 14), cols=(28,), dataflows=("rs", "flex", "is_systolic"), rf_bytes=(24, 2),
                     gb_kib=(108, 1), dram_gbps=(3.3, 25.6), dram_latency=(0, 37.5), mac_bits=(8, 12),
                     zero_skip=(True,), clock_mhz=(200, 333.3), energy_table=tuple(sorted(ENERGY_TABLES)),
                     dram_type=("", "HBM2"), flex_set=("ws", "rs", "os"))], ids=["default", "small", "odd"])
def test_the_grid_as_arrays_is_the_stacked_grid_to_the_bit(space):
    for limit in (None, 7):
        indices = space.grid_indices(limit, np.random.default_rng(3))
        arrays, built = space.stacked(indices), stack(space.grid(limit, np.random.default_rng(3)))
        for name, column in arrays._asdict().items():
            assert column.dtype == getattr(built, name).dtype and np.array_equal(column, getattr(built, name)), name
        assert [a for a in GridPoints(space, indices)] == space.grid(limit, np.random.default_rng(3))


def test_the_grid_as_arrays_refuses_what_an_accelerator_refuses():
    """A bandwidth in range at every choice alone but out of range for one GB/s and clock pair."""
    space = AcceleratorSpace(dram_gbps=(1e-3, 16.0), clock_mhz=(100.0, 1e5))
    with pytest.raises(ValueError, match="dram_bw"):
        space.grid()
    with pytest.raises(ValueError, match="dram_bw"):
        space.stacked()


def test_space_json_round_trip_hash_and_normalisation():
    space = AcceleratorSpace(rows=[8, 32], dram_gbps=(16, 32), zero_skip=(True,), flex_set=("os", "ws", "rs"))
    assert space.dram_gbps == (16.0, 32.0) and space.rows == (8, 32) and space.flex_set == ("ws", "os", "rs")
    again = AcceleratorSpace.from_json(space.to_json())
    assert again == space and hash(again) == hash(space)
    assert again.to_json() == space.to_json()
    assert AcceleratorSpace.from_json(DEFAULT_ACCELERATOR_SPACE.to_json()) == DEFAULT_ACCELERATOR_SPACE
    assert {space, again, DEFAULT_ACCELERATOR_SPACE} == {space, DEFAULT_ACCELERATOR_SPACE}
    single = AcceleratorSpace(**{f: v[:1] for f, v in DEFAULT_ACCELERATOR_SPACE.axes.items()})
    assert single.size == 1 and single.param_names == () and single.from_params({}) == single.grid()[0]


def test_presets():
    sq = preset("squeezelerator")
    assert sq.pes == 1024 and sq.dataflow == "flex" and sq.flex_set == ("ws", "os")
    assert sq.gb_bytes == 128 * 1024 and sq.dram_bw == 32.0 and sq.clock_mhz == 500 and sq.zero_skip
    assert sq.rf_bytes == 16 and sq.mac_bits == 16 and sq.dram_latency == 100
    eyeriss = preset("eyeriss")
    assert eyeriss.pes == 168 and eyeriss.dataflow == "rs" and eyeriss.gb_bytes == 108 * 1024
    tpu = preset("tpu_v1")
    assert tpu.pes == 65536 and tpu.dataflow == "ws_systolic" and tpu.mac_bits == 8
    assert tpu.gb_bytes == 24 * 2**20 and math.isclose(tpu.dram_gbps, 34)
    sdn = preset("shidiannao")
    assert sdn.pes == 64 and sdn.dataflow == "os" and sdn.clock_mhz == 1000 and not sdn.zero_skip
    assert all(a.name == name for name, a in PRESETS.items())
    assert all(Accelerator.from_json(a.to_json()) == a for a in PRESETS.values())
    costs = evaluate_batch(WORKLOAD, list(PRESETS.values()))
    assert np.all(costs.cycles >= WORKLOAD.macs / np.array([a.pes for a in PRESETS.values()]))
    assert np.all(np.isfinite(costs.energy_pj))
    with pytest.raises(ValueError) as info:
        preset("tpu_v9")
    assert all(name in str(info.value) for name in PRESETS)


@pytest.mark.parametrize("changes, field", [
    (dict(rows=()), "rows"),
    (dict(gb_kib=(64, -128)), "gb_kib"),
    (dict(dataflows=("ws", "diagonal")), "dataflows"),
    (dict(dataflows="ws"), "dataflows"),
    (dict(cols=(8.5,)), "cols"),
    (dict(rows=(True,)), "rows"),
    (dict(mac_bits=(64,)), "mac_bits"),
    (dict(dram_gbps=(0,)), "dram_gbps"),
    (dict(dram_latency=(-1,)), "dram_latency"),
    (dict(zero_skip=(0, 1)), "zero_skip"),
    (dict(energy_table=("magic",)), "energy_table"),
    (dict(dram_type=("DDR9",)), "dram_type"),
    (dict(flex_set=("flex",)), "flex_set"),
    (dict(rows=(8, 8)), "rows"),
])
def test_bad_input_names_the_field(changes, field):
    with pytest.raises(ValueError, match=f"'{field}'"):
        AcceleratorSpace(**changes)


def test_bad_dataflow_message_lists_the_allowed_values():
    with pytest.raises(ValueError) as info:
        AcceleratorSpace(dataflows=("diagonal",))
    assert str(info.value).startswith("accelerator space: field 'dataflows'")
    assert "diagonal" in str(info.value) and all(d in str(info.value) for d in ("ws", "os", "rs", "flex"))
    with pytest.raises(ValueError, match=r"AcceleratorSpace: unknown field\(s\) \['pe_count'\]; allowed: rows, cols"):
        AcceleratorSpace.from_dict({"rows": [8], "pe_count": [64]})
    with pytest.raises(ValueError, match=r"Accelerator: unknown field\(s\) \['pes'\]; allowed: rows, cols"):
        Accelerator.from_dict({"pes": 64})
    with pytest.raises(ValueError, match="limit"):
        SMALL.grid(limit=0)
