"""scikit-learn's estimator contract without importing scikit-learn.

``get_params``/``set_params`` read the constructor's signature (every argument is stored under
its own name), ``repr`` shows the parameters that differ from their defaults, and the dunder
hook scikit-learn calls (``__sklearn_tags__``) imports it only when scikit-learn itself asks
(``check_is_fitted`` reads the fitted attributes, ending in ``_``, as for any estimator). ``sklearn.base.clone`` and ``sklearn.utils.validation.check_is_fitted``
work on these estimators as on any other. Importing ``sklearn.base`` costs more than a second
of CPU (it loads SciPy and pandas), which ``import trajinfer`` does not pay.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["EstimatorParams", "not_fitted_error"]


def not_fitted_error(message: str) -> Exception:
    """scikit-learn's :class:`~sklearn.exceptions.NotFittedError` with ``message``."""
    from sklearn.exceptions import NotFittedError

    return NotFittedError(message)


class EstimatorParams:
    """Parameters of an estimator whose ``__init__`` stores each argument under its name."""

    @classmethod
    def _get_param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        return sorted(name for name, p in signature.parameters.items() if name != "self" and p.kind not in kinds)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters and their values (``deep`` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> EstimatorParams:
        """Set constructor parameters; returns the estimator."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for estimator {type(self).__name__}; valid parameters are {valid}.")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()}
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            try:
                same = bool(value == default) if not callable(value) else value is default
            except (TypeError, ValueError):
                same = value is default
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import Tags, TargetTags

        return Tags(estimator_type=None, target_tags=TargetTags(required=False), transformer_tags=None,
                    regressor_tags=None, classifier_tags=None)
