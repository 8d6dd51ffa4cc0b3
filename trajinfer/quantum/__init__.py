"""Quantum dynamics from samples: the hydrogen-atom experiment of the Action Matching paper.

- :mod:`~trajinfer.quantum.hydrogen`: eigenstates ``ψ_nlm``, superpositions with exact time
  evolution, densities, Bohmian velocities and scores.
- :mod:`~trajinfer.quantum.sampling`: Metropolis sampling, Bohmian transport, datasets.
- :mod:`~trajinfer.quantum.paths`: marginal paths for :meth:`trajinfer.ActionMatching.fit`.
- :mod:`~trajinfer.quantum.baselines`: score matching and annealed Langevin dynamics.
- :mod:`~trajinfer.quantum.evaluate`: the paper's MMD protocol and velocity errors.

Example
-------
>>> import trajinfer as tj
>>> path = tj.quantum.HydrogenPath(n_samples=5000)                    # doctest: +SKIP
>>> est = tj.ActionMatching(potential="residual", hidden_dims=(256,) * 5).fit(path)  # doctest: +SKIP
"""

from .baselines import (
    ScoreModel,
    ScoreNetwork,
    annealed_langevin,
    fit_score_model,
    score_matching_loss,
    true_score,
)
from .evaluate import (
    PAPER_AVERAGE_MMD,
    average_mmd,
    evaluation_times,
    paper_mmd,
    relative_velocity_error,
    select_step_size,
    simulate_action_matching,
    simulate_langevin,
)
from .hydrogen import (
    BOHR_RADIUS,
    DEFAULT_STATES,
    CallableWavefunction,
    HydrogenSuperposition,
    Wavefunction,
    beat_period,
    eigenfunction,
    energy,
    spherical_quadrature,
)
from .paths import DatasetPath, HydrogenPath, WavefunctionPath
from .sampling import SnapshotSeries, bohmian_transport, generate_dataset, metropolis

__all__ = [
    "BOHR_RADIUS",
    "DEFAULT_STATES",
    "PAPER_AVERAGE_MMD",
    "CallableWavefunction",
    "DatasetPath",
    "HydrogenPath",
    "HydrogenSuperposition",
    "ScoreModel",
    "ScoreNetwork",
    "SnapshotSeries",
    "Wavefunction",
    "WavefunctionPath",
    "annealed_langevin",
    "average_mmd",
    "beat_period",
    "bohmian_transport",
    "eigenfunction",
    "energy",
    "evaluation_times",
    "fit_score_model",
    "generate_dataset",
    "metropolis",
    "paper_mmd",
    "relative_velocity_error",
    "score_matching_loss",
    "select_step_size",
    "simulate_action_matching",
    "simulate_langevin",
    "spherical_quadrature",
    "true_score",
]
