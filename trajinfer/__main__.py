"""``python -m trajinfer``: the command line of :mod:`trajinfer.cli`."""

from .cli import main

raise SystemExit(main())
