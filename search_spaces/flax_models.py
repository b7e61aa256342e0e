"""Flax (linen) modules built from a NetworkSpec: trainable at any input resolution.

``build_model(spec)`` returns a module whose layers are exactly those of
:func:`search_spaces.networks.layer_table` (same order, kernels, strides, groups and
padding), with batch norm and ReLU after every convolution; the classifier convolution
(SqueezeNet head) and fully connected layers carry a bias instead. Inputs are NHWC.

Convolutions and dense layers are created through ``conv_factory`` / ``dense_factory``
so a compression policy can swap in quantized or masked versions.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax.numpy as jnp

from search_spaces.networks import NetworkSpec, Stage


def _max_pool_ceil(x, kind: str):
    """Max pooling (stride 2) in ceil mode: pads the bottom/right edge with -inf."""
    if kind == "none":
        return x
    window = 2 if kind == "max2" else 3
    H, W = x.shape[1], x.shape[2]
    P = math.ceil((H - window) / 2) + 1
    Q = math.ceil((W - window) / 2) + 1
    pad_h = (P - 1) * 2 + window - H
    pad_w = (Q - 1) * 2 + window - W
    x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), constant_values=-jnp.inf)
    return nn.max_pool(x, (window, window), strides=(2, 2), padding="VALID")


class ConvBN(nn.Module):
    """Convolution (no bias), batch norm, optional ReLU."""

    features: int
    kernel: tuple[int, int]
    stride: int = 1
    padding: tuple[int, int] | None = None
    groups: int = 1
    relu: bool = True
    conv_factory: Callable[..., nn.Module] = nn.Conv

    @nn.compact
    def __call__(self, x, train: bool):
        R, S = self.kernel
        pad_h, pad_w = (R // 2, S // 2) if self.padding is None else self.padding
        x = self.conv_factory(self.features, (R, S), strides=(self.stride, self.stride),
                              padding=((pad_h, pad_h), (pad_w, pad_w)), feature_group_count=self.groups,
                              use_bias=False)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        return nn.relu(x) if self.relu else x


class Network(nn.Module):
    """The network a NetworkSpec describes."""

    spec: NetworkSpec
    conv_factory: Callable[..., nn.Module] = nn.Conv
    dense_factory: Callable[..., nn.Module] = nn.Dense

    def _conv(self, x, features, kernel, train, stride=1, padding=None, groups=1, relu=True, name=None):
        return ConvBN(features, kernel, stride, padding, groups, relu, self.conv_factory, name=name)(x, train)

    def _block(self, x, stage: Stage, s: int, i: int, width: int, stride: int, train: bool):
        k = stage.kernel
        p = f"s{s}b{i}"
        C = x.shape[-1]
        if stage.block == "conv":
            return self._conv(x, width, (k, k), train, stride, groups=stage.groups, name=f"{p}_conv")
        if stage.block == "dwsep":
            x = self._conv(x, C, (k, k), train, stride, groups=C, name=f"{p}_dw")
            return self._conv(x, width, (1, 1), train, name=f"{p}_pw")
        if stage.block == "inverted":
            hidden = max(1, int(round(C * stage.expansion)))
            y = x
            if hidden != C:
                y = self._conv(y, hidden, (1, 1), train, name=f"{p}_expand")
            y = self._conv(y, hidden, (k, k), train, stride, groups=hidden, name=f"{p}_dw")
            y = self._conv(y, width, (1, 1), train, relu=False, name=f"{p}_project")
            return x + y if stride == 1 and C == width else y
        if stage.block == "fire":
            squeeze = max(1, int(round(width * stage.expansion)))
            y = self._conv(x, squeeze, (1, 1), train, stride, name=f"{p}_squeeze")
            a = self._conv(y, width // 2, (1, 1), train, name=f"{p}_expand1x1")
            b = self._conv(y, width // 2, (k, k), train, name=f"{p}_expand{k}x{k}")
            return jnp.concatenate([a, b], axis=-1)
        if stage.block == "squeezenext":
            y = self._conv(x, width // 2, (1, 1), train, stride, name=f"{p}_reduce1")
            y = self._conv(y, width // 4, (1, 1), train, name=f"{p}_reduce2")
            y = self._conv(y, width // 2, (k, 1), train, padding=(k // 2, 0), name=f"{p}_{k}x1")
            y = self._conv(y, width // 2, (1, k), train, padding=(0, k // 2), name=f"{p}_1x{k}")
            y = self._conv(y, width, (1, 1), train, relu=False, name=f"{p}_expand")
            shortcut = x
            if C != width or stride != 1:
                shortcut = self._conv(x, width, (1, 1), train, stride, relu=False, name=f"{p}_shortcut")
            return nn.relu(y + shortcut)
        if stage.block == "residual":
            y = self._conv(x, width, (k, k), train, stride, name=f"{p}_conv1")
            y = self._conv(y, width, (k, k), train, relu=False, name=f"{p}_conv2")
            shortcut = x
            if C != width or stride != 1:
                shortcut = self._conv(x, width, (1, 1), train, stride, relu=False, name=f"{p}_shortcut")
            return nn.relu(y + shortcut)
        raise ValueError(f"unknown block {stage.block!r}")

    @nn.compact
    def __call__(self, x, train: bool = False):
        spec = self.spec
        stem = spec.stem
        x = self._conv(x, spec.scaled(stem.width), (stem.kernel, stem.kernel), train, stem.stride,
                       padding=(stem.pad, stem.pad), name="stem")
        x = _max_pool_ceil(x, stem.pool)
        for s, stage in enumerate(spec.stages):
            multiple = 4 if stage.block in ("fire", "squeezenext") else 1
            width = spec.scaled(stage.width, multiple)
            for i in range(stage.depth):
                x = self._block(x, stage, s, i, width, stage.stride if i == 0 else 1, train)
            x = _max_pool_ceil(x, stage.pool)
        if spec.head == "conv":
            x = self.conv_factory(spec.num_classes, (1, 1), use_bias=True, name="classifier")(x)
            return jnp.mean(x, axis=(1, 2))
        if spec.head == "fc":
            x = jnp.mean(x, axis=(1, 2))
        else:
            x = x.reshape((x.shape[0], -1))
        for j, width in enumerate(spec.head_widths):
            x = nn.relu(self.dense_factory(width, name=f"fc{j}")(x))
        return self.dense_factory(spec.num_classes, name="fc")(x)


def build_model(spec: NetworkSpec, **factories: Any) -> Network:
    return Network(spec, **factories)


def count_params(params) -> int:
    import jax

    return int(sum(leaf.size for leaf in jax.tree_util.tree_leaves(params)))
