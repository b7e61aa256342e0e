"""The elastic network: one compiled model for a whole space, exact against each candidate's own model."""

import collections
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest


from search_spaces.compression import CompressionPolicy, CompressionSpace, apply_masks, update_masks
from search_spaces.elastic import ElasticNetwork, ElasticSpace, embed, encode_masks, extract, init
from search_spaces.flax_models import FAST_COMPILE, build_model, layer_settings
from search_spaces.network_space import NetworkSpace
from search_spaces.networks import BLOCKS

jax.config.update("jax_default_prng_impl", "rbg")

#: Every block type, kernel 3/5/7, one or two stages of depth 1 or 2, several widths, expansions and
#: width multipliers; every bit width, and both pruning kinds.
NETWORKS = NetworkSpace(blocks=BLOCKS, stages=(1, 2), depths=(1, 2), widths=(8, 16, 24), kernels=(3, 5, 7),
                        stem_kernels=(3, 5), stem_widths=(8, 16), expansions=(0.25, 1.0, 2.0),
                        width_multipliers=(0.5, 1.0), resolutions=(8,))
COMPRESSION = CompressionSpace(w_bits=(2, 4, 8, 16, "float"), a_bits=(4, 8, "float"), prune_ratios=(0.0, 0.5),
                               granularities=("unstructured", "channel"))


#: NETWORKS with every stage of depth 1: half the blocks of its elastic network to compile.
SHALLOW = dataclasses.replace(NETWORKS, depths=(1,))


@pytest.fixture(scope="module")
def space():
    return ElasticSpace.of(NETWORKS, COMPRESSION, resolution=8)


BITS = (2, 4, 8, 16, "float")


def candidate(rng, n, networks=NETWORKS):
    """Candidate ``n`` of ``networks``: a drawn network whose first stage cycles through every block type,
    kernel, depth and width, a policy cycling through every bit width and pruning kind, and its own model's
    variables: random, like trained ones (no ties at zero), pruned by magnitude."""
    spec = networks.draw(rng)
    depth = networks.depths[n // 3 % len(networks.depths)]
    first = dataclasses.replace(spec.stages[0], block=BLOCKS[n % 6], kernel=(3, 5, 7)[n % 3], depth=depth,
                                width=(8, 16, 24)[n // 2 % 3],
                                expansion=(0.25, 2.0)[n % 2] if BLOCKS[n % 6] in ("fire", "inverted") else 1.0)
    spec = spec.replace(stages=(first,) + spec.stages[1:])
    spec = _rebuilt(spec)
    policy = CompressionPolicy.uniform(BITS[n % 5], ("float", 4, 8)[n % 3], (0.0, 0.5, 0.5)[n % 3],
                                       ("unstructured", "channel")[n // 3 % 2])
    model = build_model(spec, policy)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
    draw = np.random.default_rng(1000 + n)
    variables = jax.tree_util.tree_map(lambda a: draw.normal(0, 0.3, a.shape).astype(np.float32), dict(shapes))
    variables["batch_stats"] = jax.tree_util.tree_map(lambda a: np.abs(a) + 0.5, variables["batch_stats"])
    if "masks" in variables:
        variables["masks"] = update_masks(variables["params"], variables["masks"], layer_settings(spec, policy))
        variables["params"] = apply_masks(variables["params"], variables["masks"])
    return spec, policy, variables


def _rebuilt(spec):
    """The spec with the head the network space gives its last stage (conv after fire, fc otherwise)."""
    return spec.replace(head="conv" if spec.stages[-1].block == "fire" else "fc")


def test_any_candidate_gives_its_own_models_logits():
    """Six candidates that cover every block type, kernel, width, stage count, bit width and pruning kind, on the
    space's stages of depth 1 (test_twelve_candidates_give_their_own_models_logits, marked slow, checks twelve on
    stages of depth 1 or 2; the fire-stage tests below run depth 2 in every test run)."""
    _candidates_give_their_own_logits(ElasticSpace.of(SHALLOW, COMPRESSION, resolution=8), 6, SHALLOW)


@pytest.mark.slow
def test_twelve_candidates_give_their_own_models_logits(space):
    _candidates_give_their_own_logits(space, 12, NETWORKS)


def _candidates_give_their_own_logits(space, count: int, networks):
    # XLA's cheaper optimisation: these programs run a few times, and compiling them is most of the test
    fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    model = ElasticNetwork(space)
    elastic = init(space)
    traces = collections.Counter()

    @fast_jit
    def infer(variables, x, encoding):
        traces["infer"] += 1
        return model.apply(variables, x, encoding)

    @fast_jit
    def train_mode(variables, x, encoding):
        traces["train"] += 1
        return model.apply(variables, x, encoding, train=True, mutable=["batch_stats"])[0]

    by_magnitude = ElasticNetwork(space, magnitude_pruning=True)  # the supernet's: masks computed in the graph

    @fast_jit
    def infer_pruning_by_magnitude(variables, x, encoding):
        traces["magnitude"] += 1
        return by_magnitude.apply(variables, x, encoding)
    x = jax.random.normal(jax.random.key(0), (16, 8, 8, 1))
    rng = np.random.default_rng(0)
    seen = collections.defaultdict(set)
    for n in range(count):
        spec, policy, variables = candidate(rng, n, networks)
        encoding = space.encode(spec, policy)
        if "masks" in variables:
            encoding = encode_masks(space, spec, encoding, variables["masks"])
        mine = embed(space, spec, variables, elastic)
        own = build_model(spec, policy)
        both = jax.jit(lambda v: (own.apply(v, x), own.apply(v, x, train=True, mutable=["batch_stats"])[0]),
                       compiler_options=FAST_COMPILE)
        inferred, reference = both(variables)
        np.testing.assert_allclose(infer(mine, x, encoding), inferred, atol=1e-5, rtol=1e-5,
                                   err_msg=f"{spec} {policy}")
        np.testing.assert_allclose(train_mode(mine, x, encoding), reference, atol=1e-5, rtol=1e-5)
        # the encoding's masks ignored: the graph's magnitude masks are the stand-alone model's (no ties here)
        np.testing.assert_allclose(infer_pruning_by_magnitude(mine, x, space.encode(spec, policy)), inferred,
                                   atol=1e-5, rtol=1e-5, err_msg=f"magnitude masks {spec} {policy}")
        settings = layer_settings(spec, policy)
        seen["blocks"] |= {s.block for s in spec.stages}
        seen["kernels"] |= {s.kernel for s in spec.stages}
        seen["depths"] |= {s.depth for s in spec.stages}
        seen["stages"].add(len(spec.stages))
        seen["widths"] |= {s.width for s in spec.stages}
        seen["w_bits"] |= {v.w_bits for v in settings.values()}
        seen["pruning"] |= {v.granularity for v in settings.values() if v.pruned}
    assert seen["blocks"] == set(BLOCKS) and seen["kernels"] == {3, 5, 7} and seen["depths"] == set(networks.depths)
    assert seen["stages"] == {1, 2} and seen["widths"] == {8, 16, 24}
    assert seen["w_bits"] == {2, 4, 8, 16, "float"} and seen["pruning"] == {"unstructured", "channel"}
    assert traces == {"infer": 1, "train": 1, "magnitude": 1}  # one compilation each, for every candidate


@pytest.mark.slow  # one compilation per candidate is also checked by test_any_candidate_gives_its_own_models_logits
def test_fifty_candidates_train_and_predict_with_one_compilation_each():
    networks = NetworkSpace(blocks=("dwsep", "fire", "squeezenext"), stages=(2,), depths=(1, 2), widths=(16, 32),
                            kernels=(3,), stem_kernels=(3, 5), stem_widths=(16,))
    compression = CompressionSpace(w_bits=(4, 8, 16), a_bits=(8, 16), prune_ratios=(0.0, 0.5))
    space = ElasticSpace.of(networks, compression, resolution=8)
    model = ElasticNetwork(space)
    variables = init(space)
    tx = optax.adam(1e-2)
    traces = collections.Counter()

    def loss(params, state, x, y, encoding):
        logits, updates = model.apply({"params": params, **state}, x, encoding, train=True, mutable=["batch_stats"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), updates

    @jax.jit
    def train_step(params, state, opt_state, x, y, encoding):
        traces["train"] += 1
        (value, updates), grads = jax.value_and_grad(loss, has_aux=True)(params, state, x, y, encoding)
        changes, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), updates, opt_state, value

    @jax.jit
    def predict(variables, x, encoding):
        traces["predict"] += 1
        return jnp.argmax(model.apply(variables, x, encoding), -1)

    params, state = variables["params"], {"batch_stats": variables["batch_stats"]}
    opt_state = tx.init(params)
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 1))
    y = jnp.arange(8) % 10
    rng = np.random.default_rng(1)
    drawn = set()
    for _ in range(50):
        spec = networks.draw(rng)
        policy = compression.draw(rng, spec)
        drawn.add((spec, policy))
        encoding = space.encode(spec, policy)
        params, state, opt_state, value = train_step(params, state, opt_state, x, y, encoding)
        assert np.isfinite(float(value))
        predict({"params": params, **state}, x, encoding).block_until_ready()
    assert len(drawn) >= 40  # different candidates
    assert traces == {"train": 1, "predict": 1}


def test_a_fire_blocks_elastic_channels_mean_the_same_at_every_width():
    """A fire block's output channels are interleaved (1x1 #0, kxk #0, 1x1 #1, ...), so a narrower fire block's
    channels are the first of a wider one's and the next layer's shared weights see the same expand channel
    at every width; the concatenated order would put the 3x3 expand's first channel at position 8 for width
    16 and the 1x1 expand's ninth there for width 32."""
    networks = NetworkSpace(blocks=("fire",), stages=(1,), depths=(1,), widths=(16, 32), kernels=(3,),
                            stem_kernels=(3,), stem_widths=(8,), resolutions=(8,))
    space = ElasticSpace.of(networks, None, resolution=8)
    spec = networks.draw(np.random.default_rng(0))
    narrow, wide = (space.encode(spec.replace(stages=(dataclasses.replace(spec.stages[0], width=w),)))
                    for w in (16, 32))
    narrow_index, wide_index = (e["blocks"]["s0b0.fire"]["gather"] for e in (narrow, wide))
    np.testing.assert_array_equal(narrow_index[:16], wide_index[:16])
    assert list(wide_index[:4]) == [0, 16, 1, 17]  # the 1x1 expand's 16 channels come first at the maximum


def test_a_fire_stage_before_an_identity_shortcut_gives_its_own_models_logits():
    """After a fire stage, a stride-1 block of the same width adds its input (the fire output, in the elastic
    order) to its last convolution's output, whose channels then follow that order too: for each block with a
    shortcut (squeezenext, inverted, dwsep), one elastic network and one compiled program for all three."""
    shortcut_blocks = ("squeezenext", "inverted", "dwsep")
    networks = NetworkSpace(blocks=("fire",) + shortcut_blocks, stages=(3,), depths=(1, 2), widths=(16,),
                            kernels=(3,), stem_kernels=(3,), stem_widths=(8,), expansions=(1.0,), resolutions=(8,),
                            min_map=4)
    space = ElasticSpace.of(networks, None, resolution=8)
    elastic = init(space)
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    fast_jit = functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    traces = collections.Counter()

    @fast_jit
    def ours(variables, encoding):
        traces["elastic"] += 1
        return ElasticNetwork(space).apply(variables, x, encoding)
    drawn = networks.draw(np.random.default_rng(0))
    for block in shortcut_blocks:
        stages = (dataclasses.replace(drawn.stages[0], block="fire", depth=2, expansion=1.0),
                  dataclasses.replace(drawn.stages[1], block="fire", depth=1, expansion=1.0),
                  dataclasses.replace(drawn.stages[2], block=block, depth=2, expansion=1.0))
        assert stages[2].stride == 1
        spec = _rebuilt(drawn.replace(stages=stages))
        model = build_model(spec, None)
        shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
        draw = np.random.default_rng(5)
        variables = jax.tree_util.tree_map(lambda a: draw.normal(0, 0.3, a.shape).astype(np.float32), dict(shapes))
        variables["batch_stats"] = jax.tree_util.tree_map(lambda a: np.abs(a) + 0.5, variables["batch_stats"])
        mine = embed(space, spec, variables, elastic)
        np.testing.assert_allclose(ours(mine, space.encode(spec)), fast_jit(model.apply)(variables, x),
                                   atol=1e-5, rtol=1e-5, err_msg=block)
        back = extract(space, spec, mine, variables)  # and out again, in the stand-alone order
        jax.tree_util.tree_map(np.testing.assert_array_equal, back, {k: variables[k] for k in back})
    assert traces == {"elastic": 1}


def test_a_candidate_outside_the_space_names_the_field_and_the_range(space):
    spec = NETWORKS.draw(np.random.default_rng(0))
    wide = spec.replace(stages=(dataclasses.replace(spec.stages[0], width=64),) + spec.stages[1:])
    with pytest.raises(ValueError, match=r"net.s0.width 64 is outside the space; allowed: <= 24"):
        space.encode(wide)
    with pytest.raises(ValueError, match=r"input '16x16x1' .* allowed: 8x8x1"):
        space.encode(spec.at_resolution(16))
    unpruned = ElasticSpace.of(NETWORKS, CompressionSpace(w_bits=(8,), a_bits=(8,), prune_ratios=(0.0,)), 8)
    with pytest.raises(ValueError, match=r"pruning of stem 0.5 .* allowed: none"):
        unpruned.encode(spec, CompressionPolicy.uniform(8, 8, 0.5))
