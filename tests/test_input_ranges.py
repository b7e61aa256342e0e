"""Bad input to the cost model: valid ranges, the file readers' errors, unmappable layers, edge-of-range numbers.

Every size and parameter of a Layer and an Accelerator has a stated range
(cost_models.workload, cost_models.accelerator); outside it is one ValueError naming the
field, the value and the range, and a file reader says so with the file, the line and the
field as the file names it. Inside the ranges, at their edges, every number the model gives
is finite and non-negative. A layer that fits no tiling of the global buffer is flagged,
not hidden.
"""

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cost_models import Accelerator, Layer, Workload, conv, dispatch, evaluate, evaluate_batch, fc, stack
from cost_models.accelerator import (ACCELERATOR_LIMITS, MAX_ARRAY_SIDE, MAX_CLOCK_MHZ, MAX_DRAM_BW, MAX_DRAM_LATENCY,
                                     MAX_GB_BYTES, MAX_RF_BYTES, MAX_SIMD_LANES, MIN_CLOCK_MHZ, MIN_DRAM_BW)
from cost_models.dataflows import ALL_DATAFLOW_NAMES
from cost_models.energy import ENERGY_TABLES
from cost_models.scalesim import FormatError, format_config, format_topology, read_config, read_topology
from cost_models.workload import KINDS, LAYER_LIMITS, MAX_CHANNELS, MAX_MAP, MIN_W_DENSITY
from search_spaces.networks import NetworkSpec
from search_spaces.reference import reference_network

BASE_LAYER = dict(name="x", kind="conv", C=3, K=8, H=8, W=8, R=3, S=3)


def at(path) -> str:
    """A file's name as a regular expression (error messages start with it)."""
    return re.escape(str(path))


# --- the ranges -------------------------------------------------------------------------------------

@pytest.mark.parametrize("field", sorted(LAYER_LIMITS))
def test_layer_fields_are_accepted_at_their_limits_and_refused_beyond(field):
    low, high = LAYER_LIMITS[field]
    # Sizes that let the field reach both ends (filters up to the map, groups dividing the channels).
    base = dict(BASE_LAYER, kind="grouped" if field == "groups" else "conv", H=MAX_MAP, W=MAX_MAP, R=1, S=1)
    if field == "groups":
        base.update(C=MAX_CHANNELS, K=MAX_CHANNELS)
    for value in (low, high):
        assert getattr(Layer(**{**base, field: value}), field) == value
    for value in (low - 1, high + 1):
        with pytest.raises(ValueError, match=rf"field '{field}' must be .*{low}.*{high}.*, got {value}"):
            Layer(**{**base, field: value})


@pytest.mark.parametrize("field", sorted(ACCELERATOR_LIMITS))
def test_accelerator_fields_are_accepted_at_their_limits_and_refused_beyond(field):
    low, high, integer = ACCELERATOR_LIMITS[field]
    for value in (low, high):
        assert getattr(Accelerator(**{field: value}), field) == value
    beyond = (low - 1, high + 1) if integer else (low / 2 if low else -1.0, high * 2, float("nan"), float("inf"))
    for value in beyond:
        with pytest.raises(ValueError, match=rf"field '{field}' must be an? (integer|number) from \S+ to \S+, got"):
            Accelerator(**{field: value})


def test_weight_density_range_and_non_numbers_are_named():
    for density in (MIN_W_DENSITY / 2, 0.0, 1.5, float("nan"), "1"):
        with pytest.raises(ValueError, match=r"field 'w_density' must be a number from 1e-12 to 1"):
            Layer(**BASE_LAYER, w_density=density)
    assert Layer(**BASE_LAYER, w_density=MIN_W_DENSITY).w_density == MIN_W_DENSITY
    with pytest.raises(ValueError, match=r"field 'P' must be an integer from 1 to 8, got 9"):
        Layer(**BASE_LAYER, P=9)


def test_the_testers_examples_are_refused_before_the_model():
    with pytest.raises(ValueError, match=r"field 'H' must be an integer from 1 to 16384, got 1000000"):
        conv("big", 3, 8, 1_000_000, R=3)
    for side in (65536, 2**31):
        with pytest.raises(ValueError, match=rf"field 'rows' must be an integer from 1 to 4096, got {side}"):
            Accelerator(rows=side, cols=side)
    with pytest.raises(ValueError, match=r"field 'clock_mhz' must be a number from 0.001 to 100000, got 1e-300"):
        Accelerator(clock_mhz=1e-300)


def test_every_packed_input_is_exact_at_the_largest_values():
    """The model receives layers and accelerators as float32 (some fields then as int32): exact in range."""
    layer = Layer("l", "grouped", MAX_CHANNELS, MAX_CHANNELS - 2, MAX_MAP, MAX_MAP - 1, MAX_MAP - 3, 7, stride=MAX_MAP - 5,
                  padding=MAX_MAP, groups=2, w_bits=31, a_bits=3)
    arrays = Workload((layer,)).arrays()
    unpacked = dispatch._unpack_layers(dispatch._pack_layers(arrays))
    for name in dispatch._INT_FIELDS & set(arrays._fields):
        np.testing.assert_array_equal(np.asarray(getattr(unpacked, name)), getattr(arrays, name), err_msg=name)
    acc = Accelerator(rows=MAX_ARRAY_SIDE, cols=MAX_ARRAY_SIDE - 1, rf_bytes=MAX_RF_BYTES - 1,
                      simd_lanes=MAX_SIMD_LANES - 1)
    params = stack(acc)
    back = dispatch._unpack_accelerators(dispatch._pack_accelerators(params))
    for name in ("rows", "cols", "rf_bytes", "simd_lanes"):
        assert float(np.asarray(getattr(back, name))[0]) == getattr(acc, name), name
    assert float(np.float32(acc.rows) * np.float32(acc.cols)) == acc.rows * acc.cols  # the model's PE count


# --- property tests at the edges of every range ----------------------------------------------------

def edges(low, high):
    """The ends of an integer range and their neighbours."""
    return st.sampled_from(sorted({low, min(low + 1, high), max(high - 1, low), high}))


@st.composite
def edge_layers(draw, kind=None):
    """A valid layer whose every field is at or next to an end of its range."""
    kind = kind or draw(st.sampled_from(KINDS))
    bits = dict(w_bits=draw(edges(1, 32)), a_bits=draw(edges(1, 32)),
                w_density=draw(st.sampled_from([MIN_W_DENSITY, 2 * MIN_W_DENSITY, 0.5, 1.0])))
    if kind == "fc":
        return Layer("l", "fc", draw(edges(1, MAX_CHANNELS)), draw(edges(1, MAX_CHANNELS)), 1, 1, **bits)
    H, W, padding = draw(edges(1, MAX_MAP)), draw(edges(1, MAX_MAP)), draw(edges(0, MAX_MAP))
    R = min(draw(edges(1, MAX_MAP)), H + 2 * padding)
    S = min(draw(edges(1, MAX_MAP)), W + 2 * padding)
    stride = draw(edges(1, MAX_MAP))
    if kind in ("pointwise", "eltwise"):
        R = S = 1
    if kind == "eltwise":
        stride, padding = 1, 0
    groups = 1
    C = K = draw(edges(1, MAX_CHANNELS))
    if kind == "depthwise":
        C = K = groups = draw(edges(2, MAX_CHANNELS))
    elif kind == "grouped":
        groups = draw(st.sampled_from([2, MAX_CHANNELS // 2]))
        C, K = groups * draw(st.sampled_from([1, 2])), groups * draw(st.sampled_from([1, 2]))
    elif kind in ("conv", "pointwise"):
        K = draw(edges(1, MAX_CHANNELS))
    return Layer("l", kind, C, K, H, W, R, S, stride, padding, groups, **bits)


edge_accelerators = st.builds(
    Accelerator,
    rows=edges(1, MAX_ARRAY_SIDE), cols=edges(1, MAX_ARRAY_SIDE),
    dataflow=st.sampled_from(ALL_DATAFLOW_NAMES),
    flex_set=st.sampled_from([("ws",), ("ws", "os"), ("ws", "os", "rs", "os_systolic", "ws_systolic", "is_systolic")]),
    rf_bytes=edges(1, MAX_RF_BYTES), gb_bytes=edges(1, MAX_GB_BYTES),
    dram_bw=st.sampled_from([MIN_DRAM_BW, 2 * MIN_DRAM_BW, MAX_DRAM_BW / 2, MAX_DRAM_BW]),
    dram_latency=st.sampled_from([0.0, 1.0, MAX_DRAM_LATENCY - 1, MAX_DRAM_LATENCY]),
    clock_mhz=st.sampled_from([MIN_CLOCK_MHZ, 2 * MIN_CLOCK_MHZ, MAX_CLOCK_MHZ / 2, MAX_CLOCK_MHZ]),
    mac_bits=edges(1, 32), zero_skip=st.booleans(), simd_lanes=edges(0, MAX_SIMD_LANES),
    energy_table=st.sampled_from(sorted(ENERGY_TABLES)),
)

EDGE_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def finite_non_negative(name, x):
    x = np.asarray(x, np.float64)
    assert np.all(np.isfinite(x)) and np.all(x >= 0), f"{name}: {x[~(np.isfinite(x) & (x >= 0))][:5]}"


@EDGE_SETTINGS
@given(layers=st.lists(edge_layers(), min_size=1, max_size=7), last=edge_layers(kind="fc"),
       accelerators=st.lists(edge_accelerators, min_size=8, max_size=8))
def test_costs_at_the_edges_of_every_range_are_finite_and_non_negative(layers, last, accelerators):
    # Always a bucket of 8 layers with a fully connected one, and 8 accelerators: every example reuses the
    # same compiled programs (the file must stay fast).
    layers = layers + [last]
    workload = Workload(tuple(Layer(**{**layer.to_dict(), "name": f"l{i}"}) for i, layer in enumerate(layers)))
    costs = evaluate_batch(workload, accelerators)
    for name in ("cycles", "compute_cycles", "stall_cycles", "latency_s", "energy_pj", "energy_by_level", "area_mm2",
                 "utilization", "unmappable_layers"):
        finite_non_negative(name, getattr(costs, name))
    for name in ("cycles", "compute_cycles", "stall_cycles", "macs", "accesses", "energy", "dram_bytes"):
        finite_non_negative(f"layers.{name}", getattr(costs.layers, name))
    utilization = costs.layers.utilization
    assert np.all(utilization > 0) and np.all(utilization <= 1 + 1e-6), utilization
    assert np.all(costs.utilization <= 1 + 1e-6)
    np.testing.assert_array_equal(costs.unmappable_layers, costs.layers.buffer_overflow.sum(-1))

    report = evaluate(workload, accelerators[0])
    json.dumps(report.total, allow_nan=False)
    json.dumps(report.to_dict(), allow_nan=False)
    assert report.table()
    alone = np.array([row["buffer_overflow"] for row in report.layers])
    batched = np.asarray(costs.layers.buffer_overflow)[0] > 0
    for i in np.flatnonzero(alone != batched):  # the layouts of one and of 8 accelerators round apart
        assert fits_only_within_float32s_resolution(workload.layers[i], accelerators[0]), workload.layers[i]


def fits_only_within_float32s_resolution(layer, accelerator) -> bool:
    """Whether ``layer`` fits the buffer of ``accelerator`` (evaluated alone or in a batch) but not one 1e-5
    smaller: a mappability decided at float32's resolution (a margin of bytes in gigabytes, at the edges of
    the ranges), where a call with one accelerator and a batch, compiled to different programs, may round to
    different answers. Anywhere else they must agree."""
    smaller = accelerator.replace(gb_bytes=max(1, int(accelerator.gb_bytes * (1 - 1e-5))))
    workload = Workload((layer,))
    alone = evaluate_batch(workload, [accelerator]).unmappable_layers[0]
    batched = evaluate_batch(workload, [accelerator, smaller]).unmappable_layers
    return bool(batched[1] == 1 and min(alone, batched[0]) == 0)


def test_a_mappability_decided_at_float32s_resolution_is_the_only_one_the_layouts_may_differ_on():
    """The tester's example (found at random by the property test above): a pooling layer of a 16384 x 16383
    window and padding 16383 needs 65,540 bytes of a 2,147,483,647.5-byte half-buffer with 65,535.5 to spare,
    a margin below float32's resolution there; evaluated alone and in a batch, the model may differ on it.
    On half that buffer it fits in no layout, and a layer of a thousandth of its size fits with any margin."""
    layer = Layer("l0", "pool", 1, 1, 2, 1, 16384, 16383, stride=1, padding=16383, w_bits=8, a_bits=32)
    accelerator = Accelerator(rows=1, cols=1, gb_bytes=2**32 - 1)
    assert fits_only_within_float32s_resolution(layer, accelerator)
    assert not fits_only_within_float32s_resolution(layer, accelerator.replace(gb_bytes=2**31))
    small = Layer("l0", "pool", 1, 1, 2, 1, 512, 511, stride=1, padding=511, w_bits=8, a_bits=32)
    assert not fits_only_within_float32s_resolution(small, accelerator)


# --- 1. sizes beyond the ranges in files: one line naming the file, the line and the field -------------

def test_topology_value_beyond_int32_names_file_line_and_column(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
                    "Conv, 3000000000, 8, 3, 3, 4, 4, 1,\n")
    with pytest.raises(FormatError, match=rf"^{at(path)}, line 2: field 'IFMAP Height' must be a positive integer "
                                          r"from 1 to 16384, got 3000000000$"):
        read_topology(path)


def test_config_value_beyond_int32_names_file_line_and_key(tmp_path):
    text = format_config(Accelerator(dataflow="os_systolic")).replace("ArrayHeight = 32", "ArrayHeight = 3000000000")
    path = tmp_path / "big.cfg"
    path.write_text(text)
    line = text.splitlines().index("ArrayHeight = 3000000000") + 1
    with pytest.raises(FormatError, match=rf"^{at(path)}, line {line}: field 'ArrayHeight' must be an integer from 1 to "
                                          r"4096, got '3000000000'$"):
        read_config(path)


def test_accelerator_json_value_beyond_int32_names_file_line_and_field(tmp_path):
    path = tmp_path / "acc.json"
    path.write_text('{\n  "dataflow": "ws",\n  "rows": 1000000000000\n}\n')
    with pytest.raises(FormatError, match=rf"^{at(path)}, line 3: field 'rows' must be an integer from 1 to 4096, "
                                          r"got 1000000000000$"):
        Accelerator.from_file(path)
    path.write_text('{"rows": 1e12}')
    with pytest.raises(FormatError, match=r"line 1: field 'rows' must be an integer from 1 to 4096, got 1000000000000.0$"):
        Accelerator.from_file(path)


def test_onnx_model_with_a_map_beyond_the_range_names_the_node(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from cost_models.onnx_import import OnnxImportError, import_onnx

    weight = numpy_helper.from_array(np.ones((8, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv1", pads=[1, 1, 1, 1])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 20000, 20000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [weight])
    path = tmp_path / "big.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(OnnxImportError, match=rf"^{at(path)}: node 'conv1' \(Conv\): layer 'conv1': field 'H' must be an "
                                              r"integer from 1 to 16384, got 20000$"):
        import_onnx(path)


# --- 3. a layer that fits no tiling is visible --------------------------------------------------------

# With a fully connected layer, as the property test's workloads: the same compiled programs serve both.
UNMAPPABLE = Workload((conv("small", 3, 8, 16, R=3, padding=1), conv("big", 512, 512, 224, R=3, padding=1),
                       fc("fc", 64, 10)))


def test_unmappable_layer_is_marked_counted_and_sized():
    acc = Accelerator(gb_bytes=1024)
    report = evaluate(UNMAPPABLE, acc)
    small, big, last = report.layers
    assert not small["buffer_overflow"] and small["buffer_needed_bytes"] is None and not last["buffer_overflow"]
    assert big["buffer_overflow"] and big["buffer_needed_bytes"] == 32 * 1024
    assert report.total["unmappable_layers"] == 1
    json.dumps(report.to_dict(), allow_nan=False)
    lines = report.table().splitlines()
    assert [line.endswith(" !") for line in lines if line.startswith(("small", "big", "fc"))] == [False, True, False]
    assert lines[-1] == ("! 1 layer fits no tiling of the 1 KiB global buffer, so these numbers are not buildable "
                         "(costed with the least-traffic tiling, which does not fit): big (needs 32 KiB)")
    # The size is the smallest power of two that fits.
    assert evaluate(UNMAPPABLE, acc.replace(gb_bytes=16 * 1024)).total["unmappable_layers"] == 1
    fits = evaluate(UNMAPPABLE, acc.replace(gb_bytes=32 * 1024))
    assert "unmappable_layers" not in fits.total and "!" not in fits.table()


def test_evaluate_batch_counts_unmappable_layers_with_and_without_per_layer_rows():
    accs = [Accelerator(gb_bytes=1024), Accelerator(gb_bytes=64 * 1024)] * 4  # 8: the shape other tests compile
    totals = evaluate_batch(UNMAPPABLE, accs, per_layer=False)
    assert totals.layers is None and totals.unmappable_layers.tolist() == [1, 0] * 4
    rows = evaluate_batch(UNMAPPABLE, accs)
    assert rows.layers.buffer_overflow.tolist() == [[0, 1, 0], [0, 0, 0]] * 4
    assert rows.unmappable_layers.tolist() == [1, 0] * 4


def test_a_layer_too_big_for_any_buffer_says_so():
    # One 32-bit channel, a 16384 x 16384 map padded to 49152 and a 16384 x 16384 filter: a tile of one
    # output row needs 16384 input rows of 49152 words (3 GiB), and double buffering twice that.
    huge = Workload((Layer("huge", "conv", 1, 1, MAX_MAP, MAX_MAP, MAX_MAP, MAX_MAP, 1, MAX_MAP, w_bits=32, a_bits=32),
                     fc("fc", 64, 10)))
    for gb_bytes in (1024, MAX_GB_BYTES):
        report = evaluate(huge, Accelerator(gb_bytes=gb_bytes))
        assert report.layers[0]["buffer_overflow"] and report.layers[0]["buffer_needed_bytes"] is None
        assert report.table().endswith("which does not fit): huge (needs more than 4 GiB)")
        json.dumps(report.to_dict(), allow_nan=False)


def test_a_stored_report_without_needed_sizes_still_names_its_unmappable_layers():
    report = evaluate(UNMAPPABLE, Accelerator(gb_bytes=1024))
    stored = type(report)(UNMAPPABLE, report.accelerator,
                          tuple({k: v for k, v in row.items() if k != "buffer_needed_bytes"} for row in report.layers),
                          report.total)
    assert stored.table().endswith("which does not fit): big")


# --- 5. the readers name the user's field, file and line ---------------------------------------------

def test_config_bandwidth_zero_names_the_cfg_key_file_and_line(tmp_path):
    text = format_config(Accelerator(dataflow="os_systolic"))
    text = text[:text.index("\n[layout]")] + text[text.index("\n[sparsity]"):]  # Bandwidth is the one read
    text = text.replace("Bandwidth = 16", "Bandwidth = 0")
    text = text[:text.index("\n[codesign]")]
    path = tmp_path / "bw.cfg"
    path.write_text(text)
    line = text.splitlines().index("Bandwidth = 0") + 1
    with pytest.raises(FormatError, match=rf"^{at(path)}, line {line}: field 'Bandwidth' must be a number from 0.001 to "
                                          r"1000000, got '0'$"):
        read_config(path)


def test_byte_order_marks_are_read_as_text(tmp_path):
    workload = reference_network("squeezenet_v1_0").workload()
    csv, cfg = tmp_path / "t.csv", tmp_path / "a.cfg"
    csv.write_bytes(b"\xef\xbb\xbf" + format_topology(workload).encode())
    acc = Accelerator(dataflow="os_systolic")
    cfg.write_bytes(b"\xef\xbb\xbf" + format_config(acc).encode())
    assert read_topology(csv).layers == workload.layers
    assert read_config(cfg).accelerator == acc
    js = tmp_path / "a.json"
    js.write_bytes(b"\xef\xbb\xbf" + acc.to_json().encode())
    assert Accelerator.from_file(js) == acc


@pytest.mark.parametrize("read", [read_topology, read_config, Accelerator.from_file, NetworkSpec.from_file])
def test_binary_files_are_not_text_files(tmp_path, read):
    path = tmp_path / "model.bin"
    path.write_bytes(bytes(range(256)))
    with pytest.raises(FormatError, match=rf"^{at(path)}: not a text file \(byte 0x80 at offset 128 is not UTF-8\)"):
        read(path)
    path.write_bytes(b"Layer name,\x00\x00")
    with pytest.raises(FormatError, match=rf"^{at(path)}: not a text file"):
        read(path)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", r"Accelerator: must be a JSON object \{field: value, \.\.\.\} with fields from rows, cols, .*; got a list"),
    ("null", r"Accelerator: must be a JSON object .*; got null"),
    ('{\n "rows": null\n}', r"line 2: Accelerator: field 'rows' must not be null \(leave it out for the default, 32\)"),
    ('{\n "cols": 8,\n "pes": 64\n}', r"line 3: Accelerator: unknown field\(s\) \['pes'\]; allowed: rows, cols"),
    ('{\n "rows": 8,\n "cols" 8\n}', r"line 3: not valid JSON: Expecting ':' delimiter"),
    ('{"dram_bw": NaN}', r"line 1: field 'dram_bw' must be a number from 0.001 to 1e\+06, got nan"),
    ('{"flex_set": ["ws", "xx"]}', r"line 1: field 'flex_set' must be a non-empty subset of ws, os"),
])
def test_accelerator_json_problems_are_one_line_with_file_and_field(tmp_path, text, message):
    path = tmp_path / "acc.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=rf"^{at(path)}(, line \d+)?: {message}"
                       if not message.startswith("line") else rf"^{at(path)}, {message}"):
        Accelerator.from_file(path)


NETWORK = reference_network("squeezenet_v1_0").to_dict()


@pytest.mark.parametrize("change, message, field", [
    (lambda d: d.pop("stem"), r"NetworkSpec: field 'stem' is missing \(it has no default\); fields: stem, stages", None),
    (lambda d: d.update(stem=None), r"NetworkSpec: field 'stem' must not be null", "stem"),
    (lambda d: d.update(stem=[3]), r"network: stem: Stem: must be a JSON object .*; got a list", "stem"),
    (lambda d: d["stem"].update(kernel=4), r"network: stem: field 'kernel' must be one of 3, 5, 7, 11; got 4", "kernel"),
    (lambda d: d.update(stages=None), r"NetworkSpec: field 'stages' must not be null", "stages"),
    (lambda d: d.update(stages=3), r"network: field 'stages' must be a non-empty list of stage objects", "stages"),
    (lambda d: d.update(stages=[]), r"network: field 'stages' must be a non-empty list of stage objects", "stages"),
    (lambda d: d["stages"][1].update(depth=None), r"network: stages\[1\]: Stage: field 'depth' must not be null",
     "depth"),
    (lambda d: d["stages"][2].pop("block"), r"network: stages\[2\]: Stage: field 'block' is missing", None),
    (lambda d: d["stages"][0].update(blocks="fire"), r"network: stages\[0\]: Stage: unknown field\(s\) \['blocks'\]",
     "blocks"),
    (lambda d: d["stages"][1].update(kernel="3"), r"network: stages\[1\]: field 'kernel' must be one of 1, 3, 5, 7",
     "kernel"),
    (lambda d: d.update(head_widths=5), r"network: field 'head_widths' must be a list of positive integers, got 5",
     "head_widths"),
    (lambda d: d.update(head_widths=None), r"NetworkSpec: field 'head_widths' must not be null \(leave it out for "
                                           r"the default, \[\]\)", "head_widths"),
])
def test_network_spec_json_problems_name_the_field_file_and_line(tmp_path, change, message, field):
    data = json.loads(json.dumps(NETWORK))
    change(data)
    text = json.dumps(data, indent=1)
    with pytest.raises(ValueError, match=message):
        NetworkSpec.from_dict(json.loads(text))  # a ValueError, never a KeyError or TypeError
    path = tmp_path / "net.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=rf"^{at(path)}(, line \d+)?: {message}") as info:
        NetworkSpec.from_file(path)
    if field is not None:  # the line given is the field's own, in the stage the message names
        line = int(re.search(r"^\S+, line (\d+): ", str(info.value)).group(1))
        lines = text.splitlines()
        assert f'"{field}"' in lines[line - 1]
        stage = re.search(r"stages\[(\d+)\]", str(info.value))
        if stage:  # with indent=1, only the root and the stages open on a line of their own
            assert sum(l.strip() == "{" for l in lines[:line]) - 2 == int(stage.group(1))


def test_network_spec_from_file_round_trips(tmp_path):
    spec = reference_network("mobilenet_v1")
    path = tmp_path / "net.json"
    path.write_text(spec.to_json())
    assert NetworkSpec.from_file(path) == spec
    with pytest.raises(FileNotFoundError, match="NetworkSpec JSON file not found"):
        NetworkSpec.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize("accelerator", [Accelerator(), Accelerator(rows=8, cols=8, gb_bytes=1024, dram_bw=2.0),
                                         Accelerator(rows=16, cols=16, dataflow="os_systolic", dram_latency=0.0)])
def test_an_unmappable_layer_is_timed_within_its_own_bounds(accelerator):
    """A layer that fits no tiling is timed by the stated fallback: its DRAM traffic over the bandwidth and its
    compute, plus one DRAM latency; never beyond (it was 3e18 cycles for this 2^20-channel 1x1 layer)."""
    report = evaluate(Workload((conv("wide", 2**20, 16, 1, R=1),)), accelerator)
    row = report.layers[0]
    assert row["buffer_overflow"] and report.total["unmappable_layers"] == 1
    bound = max(row["compute_cycles"], row["dram_bytes"] / accelerator.dram_bw) + accelerator.dram_latency
    assert row["dram_bytes"] / accelerator.dram_bw <= row["cycles"] <= bound * (1 + 1e-6)
    assert row["compute_cycles"] <= row["cycles"]
