"""The accuracy side: how good a network + compression pair is, without the accelerator.

- ``datasets.py``: the built-in and user datasets, split three ways and normalised
  (:class:`Dataset`, :class:`DataSpec`, :func:`load_dataset`, :func:`from_arrays`).
- ``training.py``: training a compressed network with optax (:class:`TrainConfig`,
  :func:`train`), quantization-aware and pruned.
- ``proxies.py``, ``population.py``, ``supernet.py``: the accuracy proxies (trained, trained
  together on one elastic network, zero-cost, the weight-sharing supernet).
- ``predictor.py``: the accuracy predictor, an MLP on a candidate's features fitted on a
  teacher proxy's scores (:class:`PredictorProxy`).
- ``proxy.py``: the :class:`Proxy` protocol they implement and the :class:`Accuracy` record.
- ``cache.py``: the accuracy cache, so that no pair is scored twice.

Nothing here knows of accelerators, trials or Ray.
"""

from codesign.accuracy.cache import AccuracyCache
from codesign.accuracy.datasets import Dataset, DataSpec, from_arrays, load_dataset
from codesign.accuracy.predictor import PredictorConfig, PredictorProxy
from codesign.accuracy.proxy import Accuracy, Proxy
from codesign.accuracy.proxies import TrainedProxy, ZeroCostProxy, make_proxy
from codesign.accuracy.supernet import SupernetConfig, SupernetProxy
from codesign.accuracy.training import TrainConfig, train

__all__ = ["Accuracy", "AccuracyCache", "DataSpec", "Dataset", "PredictorConfig", "PredictorProxy", "Proxy",
           "SupernetConfig", "SupernetProxy", "TrainConfig", "TrainedProxy", "ZeroCostProxy", "from_arrays",
           "load_dataset", "make_proxy", "train"]
