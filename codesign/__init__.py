"""codesign: hardware-aware NAS and accelerator co-design (Optuna search, Ray scale-out, JAX cost model).

    import codesign
    experiment = codesign.Experiment(name="demo", trials=40)
    results = codesign.run(experiment)          # Optuna ask/tell, candidates as Ray tasks
    print(results.table())                      # the Pareto front
    best = results.pareto_front[0]
    best.predict(raw_images), best.cost_report().table(), best.accelerator

One trial's path: :mod:`codesign.search` (ask, sample a :class:`Candidate`, submit,
tell) -> :mod:`codesign.evaluator` (the :class:`Evaluator`: one cost-model call plus
the cached accuracy proxy) -> :mod:`codesign.outcome` (the :class:`Outcome` that
writes itself to the study and reads itself back, which :mod:`codesign.results`
builds designs on). Metrics, their units and directions: :mod:`codesign.metrics`.
"""

from codesign import compilation

compilation.enable()  # before JAX is imported: compiled programs are kept once per machine

from codesign.accuracy import (Dataset, PredictorConfig, PredictorProxy, SupernetConfig, SupernetProxy, TrainConfig,
                               TrainedProxy, ZeroCostProxy, from_arrays, load_dataset, make_proxy)
from codesign.evaluator import Evaluator
from codesign.experiment import Experiment
from codesign.metrics import METRICS, Constraint, Objective
from codesign.outcome import Candidate, Outcome, Status
from codesign.results import Design, Results, load
from codesign.search import run

__all__ = ["METRICS", "Candidate", "Constraint", "Dataset", "Design", "Evaluator", "Experiment", "Objective",
           "Outcome", "PredictorConfig", "PredictorProxy", "Results", "Status", "SupernetConfig", "SupernetProxy",
           "TrainConfig", "TrainedProxy", "ZeroCostProxy", "from_arrays", "load", "load_dataset", "make_proxy", "run"]
