"""Shared docstring fragments are filled in every public docstring of tl and pl."""

from __future__ import annotations

import inspect
import re

import pytest

import trajinfer as tj
from trajinfer._docs import FRAGMENTS, doc_params

PLACEHOLDER = re.compile(r"^\s*\{\w+\}\s*$", re.MULTILINE)


def _public_functions():
    for module in (tj.tl, tj.pl):
        for name in getattr(module, "__all__", dir(module)):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                yield f"{module.__name__}.{name}", obj


@pytest.mark.parametrize(("name", "function"), list(_public_functions()), ids=lambda v: v if isinstance(v, str) else "")
def test_no_unfilled_fragment(name, function):
    assert function.__doc__, f"{name} has no docstring"
    assert not PLACEHOLDER.search(function.__doc__), f"{name} has an unfilled docstring fragment"


def test_fragment_is_indented_like_its_placeholder():
    @doc_params()
    def example():
        """Do something.

        Parameters
        ----------
        {ax}
        """

    lines = example.__doc__.splitlines()
    first = FRAGMENTS["ax"].splitlines()
    assert lines[4] == "        " + first[0]
    assert lines[5] == "        " + first[1]


def test_unknown_fragment_is_an_error():
    with pytest.raises(KeyError, match="no_such_fragment"):
        @doc_params()
        def example():
            """{no_such_fragment}"""
