"""The repository is ``ruff`` clean under the configuration in ``pyproject.toml``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean():
    pytest.importorskip("ruff", reason="ruff is part of the test extra")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", str(REPO)], capture_output=True,
                            text=True, cwd=REPO, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
