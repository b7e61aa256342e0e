"""Reference networks of the source papers, as NetworkSpecs (by name).

Architectures follow the original papers: AlexNet (Krizhevsky et al., two-group
conv2/4/5, 227x227), MobileNet v1 1.0-224, SqueezeNet v1.0 and v1.1 (227x227,
ceil-mode pools), 1.0-SqNxt-23 (SqueezeNext), Tiny Darknet and ResNet-18.
"""

from __future__ import annotations

import dataclasses

from search_spaces.networks import NetworkSpec, Stage, Stem


def alexnet() -> NetworkSpec:
    return NetworkSpec(
        Stem(kernel=11, stride=4, width=96, padding=0, pool="max3"),
        (Stage("conv", 1, 256, kernel=5, groups=2, pool="max3"),
         Stage("conv", 1, 384, kernel=3),
         Stage("conv", 1, 384, kernel=3, groups=2),
         Stage("conv", 1, 256, kernel=3, groups=2, pool="max3")),
        head="fc3", head_widths=(4096, 4096), resolution=227, name="alexnet")


def mobilenet_v1() -> NetworkSpec:
    return NetworkSpec(
        Stem(kernel=3, stride=2, width=32),
        (Stage("dwsep", 1, 64), Stage("dwsep", 2, 128, stride=2), Stage("dwsep", 2, 256, stride=2),
         Stage("dwsep", 6, 512, stride=2), Stage("dwsep", 2, 1024, stride=2)),
        head="fc", resolution=224, name="mobilenet_v1")


def squeezenet_v1_0() -> NetworkSpec:
    return NetworkSpec(
        Stem(kernel=7, stride=2, width=96, padding=0, pool="max3"),
        (Stage("fire", 2, 128, expansion=0.125), Stage("fire", 1, 256, expansion=0.125, pool="max3"),
         Stage("fire", 1, 256, expansion=0.125), Stage("fire", 2, 384, expansion=0.125),
         Stage("fire", 1, 512, expansion=0.125, pool="max3"), Stage("fire", 1, 512, expansion=0.125)),
        head="conv", resolution=227, name="squeezenet_v1_0")


def squeezenet_v1_1() -> NetworkSpec:
    return NetworkSpec(
        Stem(kernel=3, stride=2, width=64, padding=0, pool="max3"),
        (Stage("fire", 2, 128, expansion=0.125, pool="max3"), Stage("fire", 2, 256, expansion=0.125, pool="max3"),
         Stage("fire", 2, 384, expansion=0.125), Stage("fire", 2, 512, expansion=0.125)),
        head="conv", resolution=227, name="squeezenet_v1_1")


def squeezenext_23() -> NetworkSpec:
    """1.0-SqNxt-23: 7x7 stem, blocks [6, 6, 8, 1] of widths 32/64/128/256, 1x1 conv to 128."""
    return NetworkSpec(
        Stem(kernel=7, stride=2, width=64, padding=0, pool="max3"),
        (Stage("squeezenext", 6, 32), Stage("squeezenext", 6, 64, stride=2),
         Stage("squeezenext", 8, 128, stride=2), Stage("squeezenext", 1, 256, stride=2),
         Stage("conv", 1, 128, kernel=1)),
        head="fc", resolution=227, name="squeezenext_23")


#: Variants of 1.0-SqNxt-23 on the Squeezelerator (Kwon et al., DAC'18, Figure 3; Gholami et al., CVPR-W'18,
#: section 6): first-layer kernel and blocks in the four SqueezeNext stages. v1 is the published
#: 1.0-SqNxt-23 and v5 the released 1.0-SqNxt-23v5; v2 only shrinks the first kernel, and v3, v4
#: are intermediate steps of moving blocks from early to late stages.
SQUEEZENEXT_VARIANTS = {
    "v1": (7, (6, 6, 8, 1)),
    "v2": (5, (6, 6, 8, 1)),
    "v3": (5, (4, 8, 8, 1)),
    "v4": (5, (2, 10, 8, 1)),
    "v5": (5, (2, 4, 14, 1)),
}


def squeezenext_variant(name: str) -> NetworkSpec:
    """One of :data:`SQUEEZENEXT_VARIANTS` (``v1`` equals :func:`squeezenext_23`)."""
    if name not in SQUEEZENEXT_VARIANTS:
        raise ValueError(f"unknown SqueezeNext variant {name!r}; choose one of {', '.join(SQUEEZENEXT_VARIANTS)}")
    kernel, depths = SQUEEZENEXT_VARIANTS[name]
    base = squeezenext_23()
    stages = tuple(dataclasses.replace(stage, depth=depth) for stage, depth in zip(base.stages, depths))
    return base.replace(stem=dataclasses.replace(base.stem, kernel=kernel), stages=stages + base.stages[len(depths):],
                        name=f"squeezenext_23_{name}")


def tiny_darknet() -> NetworkSpec:
    def pair(squeeze, expand, pool="none"):
        return (Stage("conv", 1, squeeze, kernel=1), Stage("conv", 1, expand, kernel=3, pool=pool))

    return NetworkSpec(
        Stem(kernel=3, stride=1, width=16, pool="max2"),
        (Stage("conv", 1, 32, kernel=3, pool="max2"),
         *pair(16, 128), *pair(16, 128, "max2"),
         *pair(32, 256), *pair(32, 256, "max2"),
         *pair(64, 512), *pair(64, 512),
         Stage("conv", 1, 128, kernel=1)),
        head="conv", resolution=224, name="tiny_darknet")


def resnet18() -> NetworkSpec:
    return NetworkSpec(
        Stem(kernel=7, stride=2, width=64, pool="max3"),
        (Stage("residual", 2, 64), Stage("residual", 2, 128, stride=2),
         Stage("residual", 2, 256, stride=2), Stage("residual", 2, 512, stride=2)),
        head="fc", resolution=224, name="resnet18")


REFERENCE_NETWORKS = {
    "alexnet": alexnet, "mobilenet_v1": mobilenet_v1, "squeezenet_v1_0": squeezenet_v1_0,
    "squeezenet_v1_1": squeezenet_v1_1, "squeezenext_23": squeezenext_23, "tiny_darknet": tiny_darknet,
    "resnet18": resnet18,
}


def reference_network(name: str) -> NetworkSpec:
    if name not in REFERENCE_NETWORKS:
        raise ValueError(f"unknown reference network {name!r}; choose one of {', '.join(REFERENCE_NETWORKS)}")
    return REFERENCE_NETWORKS[name]()
