"""The ``trajinfer`` command line: ``fit``, ``simulate`` and ``demo`` (also ``python -m trajinfer``).

Bad input (a missing or damaged file, an unknown time key or method, an output path that is an
input file, ...) ends with exit status 2 and one line ``trajinfer: error: <reason>`` on stderr;
a fit that diverges ends with status 1. Outputs are written atomically: an interrupted command
leaves any previous file at an output path as it was.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import __version__
from . import _defaults as defaults
from ._defaults import INTERPOLATIONS, METHODS
from ._device import resolve_device
from ._distributed import is_main_process
from ._io import write_atomically
from ._saved import load
from ._settings import settings

if TYPE_CHECKING:
    from .tl import FitRecord

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main"]

PROG = "trajinfer"


class InputError(Exception):
    """A problem with the user's input, reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """Argument parser whose usage errors are one line on stderr with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------ argument types
def _sigma(text: str) -> float | str:
    if text == "auto":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'auto', got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"sigma must be positive, got {text!r}")
    return value


def _hidden_dims(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 128,128,128, got {text!r}") from None
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"layer widths must be positive, got {text!r}")
    return dims


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``trajinfer`` argument parser with its subcommands."""
    parser = _Parser(prog=PROG, description="Learn population dynamics from time-course snapshots with Action Matching.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{fit,simulate,demo}")

    fit = commands.add_parser(
        "fit", help="fit a model to a time-course .h5ad file",
        description="Fit Action Matching to the cells of an .h5ad file with trajinfer.fit, save the model and "
        "optionally the annotated data (obsm['<key>_velocity'], obs['<key>_growth'], uns['<key>']).",
    )
    fit.add_argument("input", metavar="INPUT.h5ad", help="AnnData file, one row per cell")
    fit.add_argument("--time-key", required=True, help="obs column with each cell's collection time")
    fit.add_argument("--method", choices=METHODS, default=defaults.METHOD, help=f"variant of Action Matching (default: {defaults.METHOD})")
    fit.add_argument("--use-rep", default=None, help="obsm key or 'X' (default: X_pca if present, else X with <= 50 variables)")
    fit.add_argument("--n-comps", type=_positive_int, default=None, help="keep the first N columns of the representation")
    fit.add_argument("--sigma", type=_sigma, default="auto", help="diffusion coefficient for eam/ueam, or 'auto' (default)")
    fit.add_argument("--interpolation", choices=INTERPOLATIONS, default=defaults.INTERPOLATION, help=f"marginal path between snapshots (default: {defaults.INTERPOLATION})")
    n_iter, lr, hidden_dims = (defaults.ON_SNAPSHOTS[name] for name in ("n_iter", "lr", "hidden_dims"))
    fit.add_argument("--n-iter", type=_positive_int, default=None, help=f"training iterations (default: {n_iter})")
    fit.add_argument("--batch-size", type=_positive_int, default=defaults.BATCH_SIZE, help=f"samples per iteration (default: {defaults.BATCH_SIZE})")
    fit.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default: {lr:g})")
    fit.add_argument("--hidden-dims", type=_hidden_dims, default=None, help=f"layer widths, e.g. 64,64 (default: {','.join(map(str, hidden_dims))})")
    fit.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    fit.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    fit.add_argument("--key-added", default="tj", help="prefix of the results written to the data (default: tj)")
    fit.add_argument("--model", required=True, metavar="OUT.pt", help="where to save the fitted model")
    fit.add_argument("--output", default=None, metavar="OUT.h5ad", help="where to write the annotated data")
    fit.add_argument("--quiet", action="store_true", help="no progress bar, log or summary")
    fit.add_argument("--distributed", action="store_true",
                     help="data-parallel fit over the processes of a torchrun launch (rank 0 writes the outputs)")
    fit.set_defaults(handler=_run_fit)

    simulate = commands.add_parser(
        "simulate", help="simulate the cells of one time point with a fitted model",
        description="Move the cells observed at one time label forward (or backward, deterministic models) and "
        "save the trajectories to an .npz file with arrays times (T,), X (T, n, d), log_weights (T, n) and "
        "cells (n,), the names of the start cells.",
    )
    simulate.add_argument("model", metavar="MODEL.pt", help="model saved by 'trajinfer fit'")
    simulate.add_argument("input", metavar="INPUT.h5ad", help="the data the model was fitted on")
    simulate.add_argument("--from", dest="from_time", required=True, metavar="LABEL", help="time label of the start cells")
    simulate.add_argument("--to", dest="to_time", default=None, metavar="LABEL", help="end time label or number (default: the last time)")
    simulate.add_argument("--n-steps", type=_positive_int, default=100, help="time steps (default: 100)")
    simulate.add_argument("--seed", type=int, default=0, help="seed of the Brownian noise (default: 0)")
    simulate.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    simulate.add_argument("--deterministic", action="store_true", help="follow the drift only, without noise (eam/ueam)")
    simulate.add_argument("--output", required=True, metavar="OUT.npz", help="where to save the trajectories")
    simulate.set_defaults(handler=_run_simulate)

    demo = commands.add_parser(
        "demo", help="fit eAM on a synthetic branching time course and score it on held-out cells",
        description="Build the petals time course, fit eAM on half of the cells of every time point, push the "
        "first time point forward, print W1 to the held-out cells against the no-move baseline and the "
        "finite-sample floor, and save a figure and a JSON file.",
    )
    demo.add_argument("--out", default="trajinfer_demo", metavar="DIR", help="output folder (default: trajinfer_demo)")
    demo.add_argument("--n-iter", type=_positive_int, default=None, help=f"training iterations (default: {n_iter}, 400 with --quick)")
    demo.add_argument("--quick", action="store_true", help="a smaller, faster run")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.set_defaults(handler=_run_demo)
    return parser


# ---------------------------------------------------------------------- helpers
def _existing_file(path: str, what: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{what} {path!r} does not exist or is not a file.")
    return file


def _distinct_outputs(outputs: dict[str, str | None], inputs: dict[str, str]) -> None:
    """Refuse an output path that is an input file or another output (writing it would destroy that file).

    ``outputs`` maps option names to paths (``None``: not requested), ``inputs`` descriptions
    such as ``"input file"`` to paths; paths are compared after :meth:`Path.resolve`.
    """
    taken = {Path(path).resolve(): f"the {what} {path!r}" for what, path in inputs.items()}
    for option, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        if resolved in taken:
            raise InputError(f"{option} {path!r} is {taken[resolved]}; writing it would destroy that file, choose another path.")
        taken[resolved] = f"also the {option} path"


def _writable(path: str | None, what: str) -> None:
    if path is not None and not Path(path).resolve().parent.is_dir():
        raise InputError(f"cannot write the {what} to {path!r}: its folder does not exist.")


def _read_h5ad(path: str) -> Any:
    import anndata  # AnnData and the tools load only for the commands that read data, not for --help

    file = _existing_file(path, "input file")
    try:
        return anndata.read_h5ad(file)
    except OSError as err:
        raise InputError(f"cannot read {path!r} as an .h5ad file ({err}).") from None


def _device(name: str) -> None:
    try:
        resolve_device(name)
    except RuntimeError as err:
        raise InputError(str(err)) from None


def _load_model(path: str, device: str) -> Any:
    return load(_existing_file(path, "model file"), device=device)


def _time_label(record: FitRecord, label: str | None) -> str | float | None:
    """A command-line label as the fitted data spells it (``"3"`` matches the label ``3.0``)."""
    if label is None:
        return None
    if label in record.time_labels:
        return label
    try:
        return float(label)
    except ValueError:
        return label


# --------------------------------------------------------------------- commands
def _run_fit(args: argparse.Namespace) -> int:
    from .tl import fit, fit_record

    _distinct_outputs({"--model": args.model, "--output": args.output}, {"input file": args.input})
    _writable(args.model, "model")
    _writable(args.output, "annotated data")
    _device(args.device)
    adata = _read_h5ad(args.input)
    model = fit(
        adata, args.time_key, method=args.method, use_rep=args.use_rep, n_comps=args.n_comps, sigma=args.sigma,
        interpolation=args.interpolation, n_iter=args.n_iter or "auto", batch_size=args.batch_size,
        lr=args.lr or "auto", hidden_dims=args.hidden_dims or "auto", device=args.device, seed=args.seed, progress=not args.quiet, key_added=args.key_added,
        run={"distributed": args.distributed},
    )
    if not is_main_process():
        return 0
    model.save(args.model)
    if args.output is not None:
        write_atomically(args.output, adata.write_h5ad)
    if not args.quiet:
        record = fit_record(model)
        sigma = f", sigma={model.sigma:.4g}" if model.sigma is not None else ""
        print(
            f"Fitted {args.method}{sigma} on {adata.n_obs} cells at {len(record.time_labels)} time points "
            f"({', '.join(record.time_labels)}) in representation {record.use_rep!r} ({record.n_comps} dims): "
            f"{model.n_iter_} iterations in {model.fit_time_:.1f} s, final loss {model.loss_curve_[-1]:.4g}."
        )
        print(f"Model saved to {args.model}" + (f"; annotated data written to {args.output}" if args.output else "") + ".")
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from .tl import cells_at, fit_record, simulate

    _distinct_outputs({"--output": args.output}, {"model file": args.model, "input file": args.input})
    _writable(args.output, "trajectories")
    _device(args.device)
    model = _load_model(args.model, args.device)
    try:
        record = fit_record(model)
    except ValueError:
        raise InputError(f"{args.model!r} was not fitted on an AnnData; simulate it from Python with model.simulate.") from None
    adata = _read_h5ad(args.input)
    from_time, to_time = _time_label(record, args.from_time), _time_label(record, args.to_time)
    stochastic = False if args.deterministic else None
    traj = simulate(adata, model, from_time, to_time, n_steps=args.n_steps, stochastic=stochastic, seed=args.seed)
    cells = np.asarray(adata.obs_names[cells_at(adata, record, from_time)], dtype=str)
    traj.save(args.output, cells=cells)
    print(f"Simulated {traj.n_particles} cells from t = {traj.times[0]:g} to t = {traj.times[-1]:g} "
          f"({len(traj.times)} time points); saved to {args.output}.")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import (  # plotting libraries load only for the demo
        format_table,
        run_demo,
    )

    results = run_demo(out_dir=args.out, n_iter=args.n_iter, quick=args.quick, seed=args.seed)
    print("W1 between the cells pushed from the first time point and held-out cells:")
    print(format_table(results))
    print(f"Figure: {results['figure']}\nResults: {results['json']}")
    return 0


def _one_line(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(message).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``trajinfer`` command line.

    Parameters
    ----------
    argv
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 1 when a fit diverges, 2 on bad input (usage errors exit 2
        through argparse).
    """
    args = build_parser().parse_args(argv)
    previous = settings.verbosity
    # the package's handler prints to stderr: messages and the fit summary, or warnings only with --quiet
    settings.verbosity = 1 if getattr(args, "quiet", False) else max(previous, 2)
    try:
        return args.handler(args)
    except (InputError, ValueError, KeyError, FileNotFoundError, TypeError, OSError) as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:
        print(f"{PROG}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    finally:
        settings.verbosity = previous
