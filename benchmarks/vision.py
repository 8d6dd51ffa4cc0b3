"""Image benchmark of Action Matching (paper Sec. 4.3, Table 3) at CPU scale.

Tasks on scikit-learn's 8×8 digits (train/test split 80/20):

- generation from N(0, I) along the linear interpolant: AM, flow matching (same U-Net, same
  iterations and batch) and ALD + sliced score matching (same U-Net, paper Algorithm 4);
  bits per dimension (uniform dequantisation, Hutchinson divergence) and Fréchet distance;
- super-resolution (one pixel of each 2×2 block kept) and inpainting (central 4×4 hole): AM;
- generation on the torus (geodesic path from uniform angles; periodic U-Net potential): AM;

and colorization on 32×32 colour patches of scikit-learn's sample photos (disjoint train/test
regions): AM.

FID needs Inception weights that cannot be downloaded here, so unless they are cached
(torchmetrics) the Fréchet distance is computed on the features of a small CNN trained on the
same training data: ``FD-digits-classifier`` (10 digit classes) and ``FD-patches-classifier``
(source photo × 4 rotations). These numbers are on their own scale and are not FIDs; the
paper's CIFAR-10 Table 3 is listed separately, labelled as such.

Usage::

    python benchmarks/vision.py --quick --out /tmp/vision     # seconds: CI smoke run
    python benchmarks/vision.py                                # CPU-scale run (~30 min, 2 cores)
    python benchmarks/vision.py --cifar-root ~/data            # + CIFAR-10 generation on a GPU

The CIFAR-10 configuration (``CIFAR10_GPU``) runs only when a GPU is present and a local copy
of CIFAR-10 (torchvision layout) is given; it follows the paper's setup at reduced length.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import trajinfer as tj  # noqa: E402
from trajinfer import vision  # noqa: E402
from trajinfer._device import resolve_device  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"

# Paper (Neklyudov et al. 2023), Table 3: CIFAR-10, 50k samples, 500k iterations on GPUs.
PAPER_TABLE3_CIFAR10 = [
    {"model": "VP-SDE (uses extra information)", "task": "generation", "bpd": 3.25, "fid": 3.71, "is": 9.12, "nfe": 199},
    {"model": "Flow Matching (uses extra information)", "task": "generation", "bpd": 2.99, "fid": 6.35, "is": None, "nfe": 142},
    {"model": "Baseline (ALD + SSM)", "task": "generation", "bpd": None, "fid": 86.29, "is": 5.43, "nfe": 1090},
    {"model": "AM", "task": "generation", "bpd": 3.54, "fid": 10.04, "is": 8.60, "nfe": 132},
    {"model": "Baseline (ALD + SSM)", "task": "superres / color", "bpd": None, "fid": None, "is": None, "nfe": None},
    {"model": "AM", "task": "superres", "bpd": None, "fid": 1.44, "is": 10.93, "nfe": 166},
    {"model": "AM", "task": "color", "bpd": None, "fid": 2.47, "is": 9.88, "nfe": 89},
]


@dataclass
class Config:
    """Sizes of one benchmark mode."""

    n_train: int | None  # digits used for training (None: the whole 80% split)
    n_eval: int  # test images for FD / BPD / completions
    unet: dict
    n_iter: int  # AM, flow matching and SSM iterations for generation
    n_iter_conditional: int  # AM iterations for super-resolution, inpainting, torus
    batch_size: int
    lr: float
    ode_steps: int  # RK4 steps for sampling and likelihoods (NFE = 4 * steps)
    ald: dict
    classifier_epochs: int
    patches: dict
    color_unet: dict
    color_iter: int
    color_batch: int
    tasks: tuple[str, ...] = ("generation", "superres", "inpainting", "torus", "colorization")


QUICK = Config(
    n_train=128, n_eval=64, unet={"base_channels": 8, "channel_mults": (1, 2)}, n_iter=15, n_iter_conditional=10,
    batch_size=16, lr=2e-3, ode_steps=3, ald={"n_levels": 5, "steps_per_level": 2, "final_steps": 2},
    classifier_epochs=2, patches={"n_train": 64, "n_eval": 32, "size": 16, "classifier_epochs": 2},
    color_unet={"base_channels": 4, "channel_mults": (1, 2, 2), "max_groups": 4}, color_iter=3, color_batch=8,
)
FULL = Config(
    n_train=None, n_eval=360, unet={"base_channels": 16, "channel_mults": (1, 2)}, n_iter=1500, n_iter_conditional=600,
    batch_size=64, lr=2e-3, ode_steps=25, ald={"n_levels": 100, "steps_per_level": 10, "final_steps": 100},
    classifier_epochs=30, patches={"n_train": 1500, "n_eval": 300, "size": 32, "classifier_epochs": 4},
    color_unet={"base_channels": 8, "channel_mults": (1, 2, 2), "max_groups": 4}, color_iter=200, color_batch=32,
)
# CIFAR-10 on a GPU (run only with --cifar-root and CUDA): the paper's U-Net at channel
# multiplier 64, generation along the linear path. The paper trains 500k iterations.
CIFAR10_GPU = {
    "unet": {"base_channels": 64, "channel_mults": (1, 2, 2, 2), "num_res_blocks": 2, "attention_resolutions": (16,),
             "dropout": 0.1},
    "n_iter": 200_000, "batch_size": 128, "lr": 2e-4, "ode_steps": 50, "n_eval": 10_000,
}


def _timer() -> float:
    return time.perf_counter()


def _fd_name(dataset: str) -> str:
    return f"FD-{dataset}-classifier"


class Evaluator:
    """Feature classifier and reference statistics for one data set."""

    def __init__(self, name: str, train: vision.ImageDataset, test: vision.ImageDataset, epochs: int, seed: int,
                 rotations: bool = False):
        images, labels = train.images, train.labels
        if rotations:
            images, labels = vision.rotation_labels(images, labels)
        start = _timer()
        self.model = vision.train_feature_classifier(images, labels, n_epochs=epochs, batch_size=64, seed=seed)
        test_images, test_labels = (vision.rotation_labels(test.images, test.labels) if rotations
                                    else (test.images, test.labels))
        self.name = name
        self.fd_name = _fd_name(name)
        self.test = test
        self.info = {
            "feature_classifier": "small CNN, 64 penultimate features; classes: "
            + ("source photo x 4 rotations" if rotations else "digit labels"),
            "classifier_test_accuracy": round(vision.classifier_accuracy(self.model, test_images, test_labels), 4),
            "classifier_train_s": round(_timer() - start, 1),
            f"{self.fd_name}(train vs test)": self.fd(train.images[: len(test)]),
        }

    def fd(self, images: Any) -> float:
        return round(vision.classifier_fd(self.model, self.test.images, np.asarray(images)), 4)

    def score(self, images: Any) -> float:
        return round(vision.classifier_score(self.model, np.asarray(images)), 3)


def _seeded(seed: int, cls: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Build a network with initial weights fixed by ``seed`` (independent of the tasks run before)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return cls(*args, **kwargs)


def _am(path: vision.InterpolantPath, unet: dict, n_iter: int, batch: int, lr: float, args: argparse.Namespace) -> tj.ActionMatching:
    """AM with the image front end's defaults (loss weight of the path, quasi-uniform times,
    coupled minibatches, U-Net potential reading the path's conditioning channels)."""
    est = _seeded(args.seed, vision.action_matching, path, unet=unet, n_iter=n_iter, batch_size=batch, lr=lr,
                  device=args.device, seed=args.seed, progress=args.progress)
    return est.fit(path)


def _am_sample(est: tj.ActionMatching, path: vision.InterpolantPath, x0: torch.Tensor, steps: int) -> torch.Tensor:
    traj = est.simulate(x0.cpu().numpy(), 0.0, 1.0, n_steps=steps, solver="rk4", progress=False)
    return path.postprocess(torch.as_tensor(traj.X[-1]))


def _bpd(field: vision.metrics.Field, path: vision.InterpolantPath, test: vision.ImageDataset, bin_width: float,
         steps: int, device: torch.device, seed: int, angles: bool = False) -> float:
    generator = torch.Generator(device=device).manual_seed(seed)
    x = vision.dequantize(torch.as_tensor(test.flat, device=device), bin_width, generator)
    width = bin_width
    if angles:
        x, width = vision.TorusPath.to_angles(x), vision.interpolants.TORUS_DATA_SCALE * bin_width
    logp = vision.log_likelihood(field, x, path.log_prior, n_steps=steps, solver="rk4", divergence="hutchinson",
                                 generator=generator)
    return round(float(np.mean(vision.bits_per_dim(logp, path.dim, width))), 4)


class Report:
    """Rows and metadata of a run, rewritten to ``vision.json`` / ``vision.md`` after every row."""

    def __init__(self, args: argparse.Namespace, cfg: Config, device: torch.device, notes: list[str]):
        self.out = args.out
        self.start = _timer()
        self.rows: list[dict] = []
        self.info: dict = {}
        self.result = {
            "mode": "quick" if args.quick else "full",
            "complete": False,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "seed": args.seed,
            "total_wall_s": 0.0,
            "config": dict(vars(cfg)),
            "cifar10_gpu_config": CIFAR10_GPU,
            "datasets": self.info,
            "runs": self.rows,
            "paper_table3_cifar10": PAPER_TABLE3_CIFAR10,
            "notes": notes,
        }

    def record(self, **row: Any) -> None:
        self.rows.append(row)
        print("  " + ", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        self.write()

    def write(self, complete: bool = False) -> dict:
        self.result["complete"] = complete
        self.result["total_wall_s"] = round(_timer() - self.start, 1)
        (self.out / "vision.json").write_text(json.dumps(self.result, indent=2, default=str) + "\n")
        write_markdown(self.result, self.out / "vision.md")
        return self.result


def _triptych(start: torch.Tensor, out: torch.Tensor, truth: Any, shape: tuple[int, int, int], n: int = 8) -> np.ndarray:
    """Rows of start / model output / ground truth for ``n`` examples spread over the test set."""
    pick = np.linspace(0, len(out) - 1, n).round().astype(int)
    parts = [np.asarray(a, dtype=np.float32).reshape(-1, *shape)[pick] for a in (start, out, truth)]
    return np.concatenate(parts)


def save_path_figure(out: Path, digits: vision.ImageDataset, patches: vision.ImageDataset | None, seed: int) -> None:
    """Rows of x_tau at tau = 0, 1/6, ..., 1 for each interpolant (paper Fig. 6)."""
    taus = torch.linspace(0, 1, 7)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for task in ("generation", "vpsde", "superres", "inpainting", "torus"):
        path = vision.make_path(task, digits.images[:1])
        x0, x1 = path.draw(1, generator)
        states = path.interpolate(x0.expand(len(taus), -1), x1.expand(len(taus), -1), taus)
        rows.append(path.to_images(states))
    vision.save_image_grid(out / "vision_paths_digits.png", torch.cat(rows), ncol=len(taus), scale=6)
    if patches is not None:
        luma = patches.images.mean(axis=1)
        chroma = np.abs(patches.images - luma[:, None]).mean(axis=(1, 2, 3))
        path = vision.ColorizationPath(patches.images[[int(np.argmax(chroma * luma.std(axis=(1, 2))))]])
        x0, x1 = path.draw(1, generator)
        states = path.interpolate(x0.expand(len(taus), -1), x1.expand(len(taus), -1), taus)
        vision.save_image_grid(out / "vision_paths_colorization.png", path.to_images(states), ncol=len(taus), scale=3)


def run_digits(cfg: Config, args: argparse.Namespace, device: torch.device, report: Report) -> None:
    digits = vision.load_digits()
    train, test = digits.split(0.2, seed=args.seed)
    if cfg.n_train is not None:
        train = train.subset(slice(0, cfg.n_train))
    test = test.subset(slice(0, cfg.n_eval))
    shape, width = digits.image_shape, digits.bin_width
    evaluator = Evaluator("digits", train, test, cfg.classifier_epochs, args.seed)
    report.info["digits"] = {"n_train": len(train), "n_test": len(test), "levels": digits.levels, **evaluator.info}
    print(f"digits: {len(train)} train / {len(test)} test; {evaluator.info}", flush=True)
    steps, nfe = cfg.ode_steps, vision.n_function_evaluations("rk4", cfg.ode_steps)
    common = {"dataset": "digits", "device": str(device), "batch_size": cfg.batch_size}
    n = len(test)
    prior_gen = torch.Generator(device=device).manual_seed(args.seed + 1)

    if "generation" in cfg.tasks:
        path = vision.LinearPath(train.images, bin_width=width, device=device)
        x0 = path.prior_sample(n, prior_gen)
        params = vision.count_parameters(vision.UNetPotential(shape, **cfg.unet))

        est = _am(path, cfg.unet, cfg.n_iter, cfg.batch_size, cfg.lr, args)
        start = _timer()
        samples = _am_sample(est, path, x0, steps)
        sample_s = _timer() - start
        bpd = _bpd(vision.potential_field(est.potential_), path, test, width, steps, device, args.seed)
        images = path.to_images(samples)
        vision.save_image_grid(args.out / "vision_generation_am.png", images[:64], ncol=8)
        report.record(**common, task="generation", model="AM", n_iter=cfg.n_iter, params=params,
                fit_s=round(est.fit_time_, 1), sample_s=round(sample_s, 1), nfe=nfe, bpd=bpd,
                fd=evaluator.fd(images), is_clf=evaluator.score(images), fid=vision.inception_fid(test.images, images))

        fm = vision.FlowMatching(_seeded(args.seed, vision.UNet, shape, **cfg.unet), n_iter=cfg.n_iter, batch_size=cfg.batch_size,
                                 lr=cfg.lr, device=device, seed=args.seed, progress=args.progress).fit(path)
        start = _timer()
        samples = vision.ode_sample(fm.field(), x0, n_steps=steps, solver="rk4")
        sample_s = _timer() - start
        bpd = _bpd(vision.module_field(fm.network_), path, test, width, steps, device, args.seed)
        images = path.to_images(samples)
        vision.save_image_grid(args.out / "vision_generation_fm.png", images[:64], ncol=8)
        report.record(**common, task="generation", model="Flow Matching", n_iter=cfg.n_iter,
                params=vision.count_parameters(fm.network_), fit_s=round(fm.fit_time_, 1), sample_s=round(sample_s, 1),
                nfe=nfe, bpd=bpd, fd=evaluator.fd(images), is_clf=evaluator.score(images),
                fid=vision.inception_fid(test.images, images))

        ssm = vision.SlicedScoreMatching(_seeded(args.seed, vision.UNet, shape, **cfg.unet), n_iter=cfg.n_iter, batch_size=cfg.batch_size,
                                         lr=cfg.lr, device=device, seed=args.seed, progress=args.progress).fit(path)
        start = _timer()
        ald_gen = torch.Generator(device=device).manual_seed(args.seed + 2)
        samples = vision.annealed_langevin_dynamics(ssm.score(path), x0, path.noise_scale, generator=ald_gen, **cfg.ald)
        sample_s = _timer() - start
        images = path.to_images(samples)
        vision.save_image_grid(args.out / "vision_generation_ald_ssm.png", images[:64], ncol=8)
        ald_nfe = cfg.ald["n_levels"] * cfg.ald["steps_per_level"] + cfg.ald["final_steps"]
        report.record(**common, task="generation", model="ALD + SSM", n_iter=cfg.n_iter,
                params=vision.count_parameters(ssm.network_), fit_s=round(ssm.fit_time_, 1),
                sample_s=round(sample_s, 1), nfe=ald_nfe, bpd=None, fd=evaluator.fd(images),
                is_clf=evaluator.score(images), fid=vision.inception_fid(test.images, images))

    for task in ("superres", "inpainting"):
        if task not in cfg.tasks:
            continue
        path = vision.make_path(task, train.images, device=device)
        est = _am(path, cfg.unet, cfg.n_iter_conditional, cfg.batch_size, cfg.lr, args)
        x0 = path.start(test.flat, prior_gen)
        start = _timer()
        samples = _am_sample(est, path, x0, steps)
        sample_s = _timer() - start
        images = path.to_images(samples)
        start_images = path.to_images(x0.cpu())
        free = ~path.mask.cpu()
        mse = float(((images.reshape(n, -1) - torch.as_tensor(test.flat))[:, free] ** 2).mean())
        vision.save_image_grid(args.out / f"vision_{task}.png", _triptych(start_images, images, test.images, shape), ncol=8)
        report.record(**common, task=task, model="AM", n_iter=cfg.n_iter_conditional,
                params=vision.count_parameters(est.potential_), fit_s=round(est.fit_time_, 1),
                sample_s=round(sample_s, 1), nfe=nfe, bpd=None, fd=evaluator.fd(images), is_clf=evaluator.score(images),
                fid=vision.inception_fid(test.images, images), mse_generated_pixels=round(mse, 4),
                fd_of_start=evaluator.fd(start_images))

    if "torus" in cfg.tasks:
        path = vision.TorusPath(train.images, bin_width=width, device=device)
        est = _am(path, cfg.unet, cfg.n_iter_conditional, cfg.batch_size, cfg.lr, args)
        x0 = path.prior_sample(n, prior_gen)
        start = _timer()
        samples = _am_sample(est, path, x0, steps)
        sample_s = _timer() - start
        bpd = _bpd(vision.potential_field(est.potential_), path, test, width, steps, device, args.seed, angles=True)
        images = path.to_images(samples)
        vision.save_image_grid(args.out / "vision_torus.png", images[:64], ncol=8)
        report.record(**common, task="torus generation", model="AM", n_iter=cfg.n_iter_conditional,
                params=vision.count_parameters(est.potential_), fit_s=round(est.fit_time_, 1),
                sample_s=round(sample_s, 1), nfe=nfe, bpd=bpd, fd=evaluator.fd(images), is_clf=evaluator.score(images),
                fid=vision.inception_fid(test.images, images))


def run_colorization(cfg: Config, args: argparse.Namespace, device: torch.device, report: Report) -> None:
    size = cfg.patches["size"]
    train = vision.load_sample_patches("train", size=size, n_patches=cfg.patches["n_train"], seed=args.seed)
    test = vision.load_sample_patches("test", size=size, n_patches=cfg.patches["n_eval"], seed=args.seed)
    evaluator = Evaluator("patches", train, test, cfg.patches["classifier_epochs"], args.seed, rotations=True)
    report.info["patches"] = {"n_train": len(train), "n_test": len(test), "size": size, "levels": train.levels, **evaluator.info}
    print(f"patches: {len(train)} train / {len(test)} test; {evaluator.info}", flush=True)
    path = vision.ColorizationPath(train.images, device=device)
    est = _am(path, cfg.color_unet, cfg.color_iter, cfg.color_batch, cfg.lr, args)
    x0 = path.start(test.flat, torch.Generator(device=device).manual_seed(args.seed + 3))
    start = _timer()
    samples = _am_sample(est, path, x0, cfg.ode_steps)
    sample_s = _timer() - start
    images = path.to_images(samples)
    start_images = path.to_images(x0.cpu())
    mse = float(((images.reshape(len(test), -1) - torch.as_tensor(test.flat)) ** 2).mean())
    vision.save_image_grid(args.out / "vision_colorization.png", _triptych(start_images, images, test.images, test.image_shape),
                           ncol=8, scale=2)
    report.record(dataset="sample-patches", device=str(device), batch_size=cfg.color_batch, task="colorization",
            model="AM", n_iter=cfg.color_iter, params=vision.count_parameters(est.potential_),
            fit_s=round(est.fit_time_, 1), sample_s=round(sample_s, 1),
            nfe=vision.n_function_evaluations("rk4", cfg.ode_steps), bpd=None, fd=evaluator.fd(images),
            is_clf=None, fid=vision.inception_fid(test.images, images), mse_generated_pixels=round(mse, 4),
            fd_of_start=evaluator.fd(start_images))


def run_cifar10(args: argparse.Namespace, device: torch.device, report: Report) -> None:
    """CIFAR-10 generation with the GPU configuration (needs CUDA and a local copy)."""
    cfg = CIFAR10_GPU
    train = vision.load_cifar10(args.cifar_root, train=True)
    test = vision.load_cifar10(args.cifar_root, train=False, n=cfg["n_eval"])
    path = vision.LinearPath(train.images, bin_width=train.bin_width, device=device)
    est = _am(path, cfg["unet"], cfg["n_iter"], cfg["batch_size"], cfg["lr"], args)
    x0 = path.prior_sample(len(test), torch.Generator(device=device).manual_seed(args.seed + 1))
    images = path.to_images(_am_sample(est, path, x0, cfg["ode_steps"]))
    vision.save_image_grid(args.out / "vision_cifar10_am.png", images[:64], ncol=8, scale=2)
    bpd = _bpd(vision.potential_field(est.potential_), path, test.subset(slice(0, 1000)), train.bin_width,
               cfg["ode_steps"], device, args.seed)
    report.info["cifar10"] = {"n_train": len(train), "n_test": len(test)}
    report.record(dataset="cifar10", device=str(device), batch_size=cfg["batch_size"], task="generation", model="AM",
            n_iter=cfg["n_iter"], params=vision.count_parameters(est.potential_), fit_s=round(est.fit_time_, 1),
            nfe=vision.n_function_evaluations("rk4", cfg["ode_steps"]), bpd=bpd, fd=None, is_clf=None,
            fid=vision.inception_fid(test.images, images))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def write_markdown(result: dict, path: Path) -> None:
    lines = [
        "# Image benchmark (paper Sec. 4.3)",
        "",
        f"Mode **{result['mode']}** on `{result['device']}` ({result['threads']} CPU threads, torch {result['torch']}), "
        f"seed {result['seed']}, total wall time {result['total_wall_s']:.0f} s. Generated by `benchmarks/vision.py`.",
        "",
        *([] if result["complete"] else ["**Partial results: the run had not finished when this file was written.**", ""]),
        "## Ours (CPU scale)",
        "",
        "FD columns are Fréchet distances on the features of a small CNN trained on the same data "
        "(`FD-digits-classifier`: digit classes; `FD-patches-classifier`: source photo × rotation). "
        "They are **not FID** and not comparable with the CIFAR-10 numbers below. `IS-clf` is the "
        "Inception-score analogue under the digits classifier (1–10). BPD: test digits, uniform "
        "dequantisation, RK4 change of variables with a Hutchinson divergence (torus: in angle "
        "units). `FD start`: the same distance for the unprocessed start images (a do-nothing reference).",
        "",
        "| dataset | task | model | iterations | batch | fit s | sample s | NFE | BPD | FD (classifier) | IS-clf | FID | MSE gen. px | FD start |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["runs"]:
        fd_label = _fd_name("patches" if row["dataset"] == "sample-patches" else row["dataset"])
        lines.append(
            f"| {row['dataset']} | {row['task']} | {row['model']} | {row['n_iter']} | {row['batch_size']} | "
            f"{_fmt(row.get('fit_s'))} | {_fmt(row.get('sample_s'))} | {_fmt(row.get('nfe'))} | {_fmt(row.get('bpd'))} | "
            f"{_fmt(row.get('fd'))} ({fd_label}) | {_fmt(row.get('is_clf'))} | {_fmt(row.get('fid'))} | "
            f"{_fmt(row.get('mse_generated_pixels'))} | {_fmt(row.get('fd_of_start'))} |"
        )
    lines += ["", "Reference values:", ""]
    for name, block in result["datasets"].items():
        lines.append(f"- **{name}**: " + "; ".join(f"{k} = {_fmt(v)}" for k, v in block.items()))
    lines += [
        "",
        "## Paper, Table 3 (CIFAR-10, 50k samples, FID with Inception-v3, 500k iterations on GPUs)",
        "",
        "| dataset | model | task | BPD | FID | IS | NFE |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["paper_table3_cifar10"]:
        lines.append(f"| CIFAR-10 | {row['model']} | {row['task']} | {_fmt(row['bpd'])} | {_fmt(row['fid'])} | "
                     f"{_fmt(row['is'])} | {_fmt(row['nfe'])} |")
    lines += ["", "Notes:", ""] + [f"- {note}" for note in result["notes"]]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: benchmarks/results, or a temporary folder with --quick)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--tasks", default=None, help="comma-separated subset of: " + ",".join(FULL.tasks))
    parser.add_argument("--cifar-root", type=Path, default=None, help="local CIFAR-10 copy (used only with a GPU)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path(tempfile.mkdtemp(prefix="vision_quick_")) if args.quick else RESULTS
    args.out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device = device
    cfg = QUICK if args.quick else FULL
    if args.tasks:
        tasks = tuple(t.strip() for t in args.tasks.split(","))
        unknown = set(tasks) - set(FULL.tasks)
        if unknown:
            parser.error(f"unknown tasks {sorted(unknown)}; choose from {FULL.tasks}")
        cfg = replace(cfg, tasks=tasks)
    torch.manual_seed(args.seed)
    save_path_figure(args.out, vision.load_digits(),
                     vision.load_sample_patches("test", n_patches=200, seed=args.seed) if "colorization" in cfg.tasks else None,
                     args.seed)
    notes = [
        "Digits: scikit-learn's 8x8 digits in [-1, 1] (17 levels, bin width 0.125), 80/20 train/test split; "
        "colour patches: 32x32 crops of scikit-learn's two sample photos, test patches from a held-out strip "
        "(different content, hence the large train-vs-test FD for patches).",
        "All models share the U-Net (sinusoidal embedding of the raw time t in [0, 1], maximum frequency 1); "
        "AM uses s = <unet(t, x), x> through vision.action_matching: time weight w = 1 - t on the linear-type "
        "paths (w = 1 for super-resolution), quasi-uniform times, x_0, x_1 and x_t of a row from one "
        "(noise, image) draw, and for super-resolution and colorization the low-resolution / grayscale image "
        "as extra U-Net input channels (gradient stopped). Flow matching and SSM use the U-Net output as "
        "velocity / scaled score. Same iterations, batch size and learning rate.",
        "ALD + SSM: annealed Langevin dynamics over the path's noise levels (dt = 1/n_levels, "
        "steps per level, final steps at t = 1), paper Algorithm 4.",
        "FID: " + ("Inception weights found; FID computed with torchmetrics." if vision.inception_weights_available()
                   else "Inception-v3 weights are not available offline, so FID is not computed (column '–')."),
    ]
    report = Report(args, cfg, device, notes)
    if set(cfg.tasks) - {"colorization"}:
        run_digits(cfg, args, device, report)
    if "colorization" in cfg.tasks:
        run_colorization(cfg, args, device, report)
    if args.cifar_root is not None:
        if device.type == "cuda":
            run_cifar10(args, device, report)
        else:
            notes.append("CIFAR-10 configuration skipped: it needs a GPU.")
    result = report.write(complete=True)
    print(f"wrote {args.out / 'vision.json'} and {args.out / 'vision.md'} in {result['total_wall_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
