"""codesign: hardware-aware NAS and accelerator co-design (Optuna search, Ray scale-out, JAX cost model).

    import codesign
    experiment = codesign.Experiment(name="demo", trials=40)
    results = codesign.run(experiment)          # Optuna ask/tell, candidates as Ray tasks
    print(results.table())                      # the Pareto front
    best = results.pareto_front[0]
    best.model()(images), best.cost_report().table(), best.accelerator

The data path: :mod:`codesign.experiment` (what to search) -> :mod:`codesign.search`
(the loop) -> :mod:`codesign.evaluation` (one candidate: cached accuracy proxy plus
one cost-model call) -> :mod:`codesign.results` (reload).
"""

from codesign.datasets import Dataset, from_arrays, load_dataset
from codesign.experiment import Constraint, Experiment, Objective
from codesign.proxies import TrainedProxy, ZeroCostProxy, make_proxy
from codesign.results import Design, Results, load
from codesign.search import run
from codesign.training import TrainConfig

__all__ = ["Constraint", "Dataset", "Design", "Experiment", "Objective", "Results", "TrainConfig", "TrainedProxy",
           "ZeroCostProxy", "from_arrays", "load", "load_dataset", "make_proxy", "run"]
