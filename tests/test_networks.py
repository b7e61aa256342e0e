"""Network specs: reference networks' MACs, parameters and Kwon et al. (DAC'18) Table 1 shares; validation."""

import pytest

from search_spaces.networks import NetworkSpec, Stage, Stem, layer_table, mac_shares
from search_spaces.reference import REFERENCE_NETWORKS, reference_network

PUBLISHED = {  # MACs, params (Cheng et al., "A Survey on Acceleration of Deep Convolutional Neural Networks")
    "alexnet": (0.72e9, 61e6),
    "mobilenet_v1": (569e6, 4.2e6),
    "resnet18": (1.8e9, 11.7e6),
}

TABLE1 = {  # Kwon et al. (DAC'18) Table 1: conv1, 1x1, FxF, DW (percent of MACs)
    "mobilenet_v1": (1, 95, 0, 3),
    "tiny_darknet": (5, 13, 82, 0),
    "squeezenet_v1_0": (21, 25, 54, 0),
    "squeezenet_v1_1": (6, 40, 54, 0),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reference_macs_and_params_match_published(name):
    spec = reference_network(name)
    macs, params = PUBLISHED[name]
    assert spec.macs == pytest.approx(macs, rel=0.02)
    assert spec.params == pytest.approx(params, rel=0.02)


def test_squeezenet_v1_0_params():
    assert reference_network("squeezenet_v1_0").params == pytest.approx(1.25e6, rel=0.01)


@pytest.mark.parametrize("name", sorted(TABLE1))
def test_mac_shares_reproduce_table1(name):
    shares = mac_shares(reference_network(name))
    conv1, pw, fxf, dw = TABLE1[name]
    # fully connected layers count with the 1x1 convolutions (they are 1x1 on a 1x1 map)
    assert shares["conv1"] == pytest.approx(conv1, abs=2)
    assert shares["1x1"] + shares["FC"] == pytest.approx(pw, abs=2)
    assert shares["FxF"] == pytest.approx(fxf, abs=2)
    assert shares["DW"] == pytest.approx(dw, abs=2)


@pytest.mark.parametrize("name", sorted(REFERENCE_NETWORKS))
def test_reference_specs_round_trip_json_and_build_workloads(name):
    spec = reference_network(name)
    again = NetworkSpec.from_json(spec.to_json())
    assert again == spec and hash(again) == hash(spec)
    workload = spec.workload()
    assert workload.macs == spec.macs
    small = spec.workload(resolution=64) if name != "alexnet" else spec.workload(resolution=99)
    assert small.macs < workload.macs


def test_from_dict_refuses_unknown_fields_by_class_name():
    data = reference_network("resnet18").to_dict()
    with pytest.raises(ValueError, match=r"NetworkSpec: unknown field\(s\) \['depth'\]; allowed: stem, stages"):
        NetworkSpec.from_dict({**data, "depth": 18})
    stages = [dict(data["stages"][0], blocks=2)] + data["stages"][1:]
    with pytest.raises(ValueError, match=r"Stage: unknown field\(s\) \['blocks'\]; allowed: block, depth"):
        NetworkSpec.from_dict({**data, "stages": stages})


def test_layer_shapes_chain():
    rows = layer_table(reference_network("resnet18"))
    assert rows[0].in_shape == (3, 224, 224) and rows[0].out_shape == (64, 112, 112)
    assert rows[-1].out_shape == (1000, 1, 1)


@pytest.mark.parametrize("make, field", [
    (lambda: Stage("transformer", 1, 32), "'block'"),
    (lambda: Stage("conv", 1, -8), "'width'"),
    (lambda: Stage("conv", 0, 8), "'depth'"),
    (lambda: Stem(kernel=4), "'kernel'"),
    (lambda: NetworkSpec(Stem(), (Stage("conv", 1, 8),), num_classes=1), "'num_classes'"),
])
def test_bad_fields_are_named(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_stride_that_shrinks_the_map_below_one_pixel_is_rejected():
    stages = tuple(Stage("conv", 1, 16, stride=2) for _ in range(5))
    with pytest.raises(ValueError, match="below 1x1|needs a map"):
        NetworkSpec(Stem(stride=2), stages, resolution=8)
