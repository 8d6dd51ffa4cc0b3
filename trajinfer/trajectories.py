"""The result of a simulation: positions and log-weights of particles over time."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ._io import write_atomically

__all__ = ["Trajectories"]


@dataclass
class Trajectories:
    """Simulated particles.

    Attributes
    ----------
    times
        Output times in the user's units, shape (T,).
    X
        Positions, shape (T, n, d).
    log_weights
        Log importance weights (0 at the start; they change only for unbalanced methods),
        shape (T, n).
    """

    times: np.ndarray
    X: np.ndarray
    log_weights: np.ndarray

    def __post_init__(self) -> None:
        T, n = self.X.shape[:2]
        if self.times.shape != (T,) or self.log_weights.shape != (T, n):
            raise ValueError("Inconsistent trajectory shapes.")

    @property
    def weights(self) -> np.ndarray:
        """Weights normalised to sum to one over particles at each time, shape (T, n)."""
        shifted = self.log_weights - self.log_weights.max(axis=1, keepdims=True)
        w = np.exp(shifted)
        return w / w.sum(axis=1, keepdims=True)

    @property
    def relative_mass(self) -> np.ndarray:
        """Total mass relative to the start, ``mean_i exp(log w_i(t))``, shape (T,)."""
        return np.exp(self.log_weights).mean(axis=1)

    @property
    def n_particles(self) -> int:
        """Number of simulated particles."""
        return self.X.shape[1]

    def at(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """Positions and normalised weights at the stored time closest to ``t``."""
        k = int(np.argmin(np.abs(self.times - t)))
        return self.X[k], self.weights[k]

    def save(self, file: str | os.PathLike[str], **arrays: np.ndarray) -> None:
        """Write the trajectories to ``file`` (NumPy ``.npz``: ``times``, ``X``, ``log_weights``).

        Parameters
        ----------
        file
            Where to write; written atomically (a previous file stays intact on failure).
        **arrays
            Further arrays stored beside them (e.g. ``cells``: the names of the start cells).

        Raises
        ------
        OSError
            If the file cannot be written completely (no space left, a file-size limit); the
            message names the file.
        """
        reserved = {"times", "X", "log_weights"} & set(arrays)
        if reserved:
            raise ValueError(f"{sorted(reserved)} are the trajectories' own arrays; name the extra arrays otherwise.")

        def write(tmp: os.PathLike[str]) -> None:
            with open(tmp, "wb") as handle:
                np.savez(handle, times=self.times, X=self.X, log_weights=self.log_weights, **arrays)

        write_atomically(file, write)

    @classmethod
    def load(cls, file: str | os.PathLike[str]) -> Trajectories:
        """Trajectories written by :meth:`save` (extra arrays are ignored)."""
        with np.load(file, allow_pickle=False) as data:
            return cls(times=data["times"], X=data["X"], log_weights=data["log_weights"])

    def __len__(self) -> int:
        return len(self.times)

    def __repr__(self) -> str:
        T, n, d = self.X.shape
        return f"Trajectories(n_times={T}, n_particles={n}, dim={d}, t=[{self.times[0]:g} .. {self.times[-1]:g}])"
