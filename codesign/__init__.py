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

from cost_models.exports import lazy_exports

#: Public name -> its module, imported on first use: ``import codesign`` and ``codesign --help`` do not import
#: JAX, Flax, Ray or Optuna.
_EXPORTS = {name: module for module, names in {
    "codesign.accuracy": ("Dataset", "PredictorConfig", "PredictorProxy", "SupernetConfig", "SupernetProxy",
                          "TrainConfig", "TrainedProxy", "ZeroCostProxy", "from_arrays", "load_dataset", "make_proxy"),
    "codesign.evaluator": ("Evaluator",),
    "codesign.experiment": ("Experiment",),
    "codesign.metrics": ("METRICS", "Constraint", "Objective"),
    "codesign.outcome": ("Candidate", "Outcome", "Status"),
    "codesign.results": ("Design", "Results", "load"),
    "codesign.search": ("run",),
}.items() for name in names}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
