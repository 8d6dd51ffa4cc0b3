"""Tests of trajinfer.vision: interpolant endpoints, the U-Net potential, data readers, likelihoods,
metrics, baselines and a small end-to-end fit."""

from __future__ import annotations

import gzip
import math
import pickle

import numpy as np
import pytest
import torch
from scipy import stats

import trajinfer as tj
from trajinfer import vision
from trajinfer.paths import MarginalPath
from trajinfer.training import DivergenceError
from trajinfer.vision import interpolants, unet

SHAPE = (1, 8, 8)
RGB = (3, 8, 8)


pytestmark = pytest.mark.usefixtures("single_thread")


def _images(n: int, shape: tuple[int, int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _pair(path: vision.InterpolantPath, n: int = 16, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    return path.draw(n, torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- interpolants
def test_linear_path_endpoints_are_exact() -> None:
    path = vision.LinearPath(_images(10, SHAPE))
    x0, x1 = _pair(path)
    n = x0.shape[0]
    assert torch.equal(path.interpolate(x0, x1, torch.zeros(n)), x0)
    assert torch.equal(path.interpolate(x0, x1, torch.ones(n)), x1)
    assert any(torch.equal(row, d) for d in path.data for row in x1[:1])
    # sample() draws the same construction from the same generator state
    sample = path.sample(torch.ones(n), torch.Generator().manual_seed(1))
    assert torch.equal(sample, x1)
    assert torch.equal(path.sample(torch.zeros(n), torch.Generator().manual_seed(1)), x0)


def test_vpsde_path_endpoints() -> None:
    path = vision.VPSDEPath(_images(10, SHAPE))
    x0, x1 = _pair(path)
    n = x0.shape[0]
    assert torch.equal(path.interpolate(x0, x1, torch.ones(n)), x1)
    a1, b1 = math.exp(-0.5 * (0.1 + 9.95)), math.sqrt(1 - math.exp(-(0.1 + 9.95)))
    start = path.interpolate(x0, x1, torch.zeros(n))
    torch.testing.assert_close(start, a1 * x1 + b1 * x0)
    tau = torch.linspace(0, 1, 11)
    torch.testing.assert_close(path.time_weight(tau), path.noise_scale(tau) ** 2)


@pytest.mark.parametrize("cls", [vision.SuperResolutionPath, vision.InpaintingPath])
def test_masked_paths_keep_conditioning_pixels(cls: type) -> None:
    path = cls(_images(10, SHAPE))
    x0, x1 = _pair(path)
    n = x0.shape[0]
    mask = path.mask
    for tau in torch.linspace(0, 1, 7):
        xt = path.interpolate(x0, x1, tau.expand(n))
        assert torch.equal(xt[:, mask], x1[:, mask])
    start = path.interpolate(x0, x1, torch.zeros(n))
    assert torch.equal(start[:, ~mask], x0[:, ~mask])
    assert torch.equal(path.interpolate(x0, x1, torch.ones(n)), x1)
    observed = path.start(x1, torch.Generator().manual_seed(3))
    torch.testing.assert_close(path.to_images(observed).reshape(n, -1)[:, mask], x1[:, mask])
    assert observed.shape == (n, path.dim)


def test_superresolution_state_carries_the_low_resolution_image() -> None:
    path = vision.SuperResolutionPath(_images(10, RGB))
    assert path.cond_channels == 3 and path.dim == 2 * path.image_dim
    x0, x1 = _pair(path, n=4)
    images = x1.reshape(4, *RGB)
    states = path.sample_triplet(torch.rand(4), torch.Generator().manual_seed(1))
    for state in states:
        low = state[:, path.image_dim :].reshape(4, *RGB)
        for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):  # every pixel of a 2x2 block sees its kept pixel
            assert torch.equal(low[:, :, i::2, j::2], images[:, :, ::2, ::2])


def test_mask_geometry() -> None:
    sr = vision.superresolution_mask((3, 8, 8))
    assert sr.sum() == 3 * 16 and sr[:, ::2, ::2].all()
    hole = ~vision.inpainting_mask((1, 8, 8))
    assert hole.sum() == 16 and hole[0, 2:6, 2:6].all()
    with pytest.raises(ValueError, match="does not fit"):
        vision.inpainting_mask((1, 8, 8), region=(6, 6, 4, 4))


def test_colorization_path_endpoints() -> None:
    path = vision.ColorizationPath(_images(10, RGB))
    x0, x1 = _pair(path)
    n = x0.shape[0]
    gray = vision.grayscale(x1, RGB)
    assert torch.equal(path.interpolate(x0, x1, torch.zeros(n)), 0.1 * x0 + gray)
    assert torch.equal(path.interpolate(x0, x1, torch.ones(n)), x1)
    channels = gray.reshape(n, *RGB)
    assert torch.equal(channels[:, 0], channels[:, 1]) and torch.equal(channels[:, 0], channels[:, 2])
    state = path.sample(torch.rand(n), torch.Generator().manual_seed(1))
    assert path.cond_channels == 1 and state.shape == (n, 4 * 64)
    assert torch.equal(state[:, path.image_dim :], channels[:, 0].reshape(n, -1))
    assert torch.equal(path.to_images(state).reshape(n, -1), state[:, : path.image_dim])
    with pytest.raises(ValueError, match="RGB"):
        vision.ColorizationPath(_images(4, SHAPE))


def test_torus_path_endpoints_and_wrapping() -> None:
    path = vision.TorusPath(_images(10, SHAPE))
    x0, theta1 = _pair(path, n=2000)
    n = x0.shape[0]
    assert torch.equal(path.interpolate(x0, theta1, torch.ones(n)), theta1)
    assert torch.equal(path.to_images(theta1), path.from_angles(theta1).reshape(-1, *SHAPE))
    start = path.interpolate(x0, theta1, torch.zeros(n))
    assert torch.allclose(vision.wrap_angle(start - x0), torch.zeros_like(x0), atol=1e-5)
    for tau in (0.0, 0.3, 0.9):
        xt = path.interpolate(x0, theta1, torch.full((n,), tau))
        assert xt.min() >= -math.pi and xt.max() < math.pi
    # the prior is uniform on the circle, whatever the data
    assert stats.kstest(x0[:, 0].numpy(), stats.uniform(-math.pi, 2 * math.pi).cdf).pvalue > 1e-3
    assert path.log_prior(x0[:3]).allclose(torch.full((3,), -64 * math.log(2 * math.pi)))


LINEAR_TASKS = ["generation", "inpainting", "colorization", "torus"]


@pytest.mark.parametrize("task", LINEAR_TASKS)
def test_linear_paths_weight_one_minus_tau(task: str) -> None:
    """ω = 1 - tau: ω(0) = 1, ω(1) = 0 (no data-end boundary term), ω' = -1."""
    path = vision.make_path(task, _images(6, RGB if task == "colorization" else SHAPE))
    tau = torch.tensor([0.0, 0.3, 0.98, 1.0], requires_grad=True)
    w = path.time_weight(tau)
    assert w[0] == 1.0 and w[-1] == 0.0
    torch.testing.assert_close(w, 1 - tau.detach())
    slope = torch.autograd.grad(w.sum(), tau)[0]
    assert torch.equal(slope, torch.full_like(slope, -1.0))


def test_superresolution_and_vpsde_weights() -> None:
    assert vision.SuperResolutionPath(_images(6, SHAPE)).time_weight is None  # ω ≡ 1
    w = vision.VPSDEPath(_images(6, SHAPE)).time_weight(torch.tensor([0.0, 0.5, 1.0]))
    assert w[0] == pytest.approx(1.0, abs=1e-4) and w[2] == 0.0 and 0 < w[1] < 1


@pytest.mark.parametrize("task", sorted(interpolants.TASKS))
def test_sample_triplet_shares_one_draw_per_row(task: str) -> None:
    """x_0, x_1 and x_tau of a row are the states of the same (noise, image) draw."""
    path = vision.make_path(task, _images(6, RGB if task == "colorization" else SHAPE), bin_width=0.1)
    tau = torch.rand(5, generator=torch.Generator().manual_seed(2))
    start, end, middle = path.sample_triplet(tau, torch.Generator().manual_seed(4))
    x0, x1 = path.draw(5, torch.Generator().manual_seed(4))
    for state, times in ((start, torch.zeros(5)), (end, torch.ones(5)), (middle, tau)):
        assert state.shape == (5, path.dim) and state.dtype == torch.float32
        torch.testing.assert_close(state, path.state(x0, x1, times), rtol=0, atol=1e-6)
    assert torch.equal(end[:, : path.image_dim], x1)
    if task != "vpsde" and not path.periodic:  # linear in tau: x_tau = (1 - tau) x_0 + tau x_1 row by row
        torch.testing.assert_close(middle, (1 - tau[:, None]) * start + tau[:, None] * end, rtol=0, atol=1e-5)


def test_snapshot_paths_keep_independent_triplets() -> None:
    path = tj.SnapshotPath([torch.zeros(50, 2), torch.ones(50, 2) + torch.randn(50, 2)], [0.0, 1.0], smoothing=0.1)
    assert type(path).sample_triplet is MarginalPath.sample_triplet
    tau = torch.rand(6)
    triplet = path.sample_triplet(tau, torch.Generator().manual_seed(0))
    drawn = path.sample(torch.cat([torch.zeros(6), torch.ones(6), tau]), torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.cat(triplet), drawn)


def test_dequantised_draws_stay_in_their_bin() -> None:
    data = vision.load_digits()
    path = vision.LinearPath(data.images[:50], bin_width=data.bin_width)
    x1 = path.sample(torch.ones(200), torch.Generator().manual_seed(0))
    nearest = torch.round((x1 + 1) / data.bin_width) * data.bin_width - 1
    assert (x1 - nearest).abs().max() <= data.bin_width / 2 + 1e-6
    assert not torch.equal(x1, nearest)


def test_path_validation() -> None:
    with pytest.raises(ValueError, match="image_shape"):
        vision.LinearPath(np.zeros((4, 64)))
    with pytest.raises(ValueError, match="Unknown task"):
        vision.make_path("deblur", _images(2, SHAPE))
    with pytest.raises(ValueError, match="conditional"):
        vision.SuperResolutionPath(_images(2, SHAPE)).prior_sample(3)
    flat = vision.SuperResolutionPath(np.zeros((2, 64)), SHAPE)
    assert flat.image_shape == SHAPE and int(flat.mask.sum()) == 16
    with pytest.raises(ValueError, match="broadcast"):
        vision.MaskedPath(_images(2, SHAPE), mask=np.ones((3, 3), dtype=bool))


# ----------------------------------------------------------------------------- U-Net
@pytest.mark.parametrize(
    "shape, kwargs",
    [(SHAPE, {"base_channels": 8}), ((3, 32, 32), {"base_channels": 8, "channel_mults": (1, 2, 2)})],
)
def test_unet_shapes(shape: tuple[int, int, int], kwargs: dict) -> None:
    d = math.prod(shape)
    net = vision.UNet(shape, **kwargs)
    potential = vision.UNetPotential(shape, **kwargs)
    x, t = torch.randn(3, d), torch.rand(3)
    assert net(x, t).shape == (3, d)
    assert potential(x, t).shape == (3,)


def test_unet_potential_is_per_sample() -> None:
    torch.manual_seed(0)
    potential = vision.UNetPotential(SHAPE, base_channels=8)
    torch.nn.init.normal_(potential.unet.head.weight, std=0.1)  # the head starts at zero
    x, t = torch.randn(3, 64), torch.rand(3)
    jac_x, jac_t = torch.autograd.functional.jacobian(potential, (x, t))
    for i in range(3):
        for j in range(3):
            assert (jac_x[i, j].abs().max() > 0) == (i == j)
            assert (jac_t[i, j] != 0) == (i == j)


def test_periodic_potential_is_periodic() -> None:
    torch.manual_seed(0)
    potential = vision.UNetPotential(SHAPE, base_channels=8, periodic=True)
    torch.nn.init.normal_(potential.unet.head.weight, std=0.1)
    x, t = torch.randn(2, 64), torch.rand(2)
    shift = 2 * math.pi * torch.randint(-2, 3, x.shape)
    torch.testing.assert_close(potential(x + shift, t), potential(x, t), atol=1e-5, rtol=1e-5)


def test_time_embedding_is_slow_on_the_unit_interval() -> None:
    """Raw t in [0, 1] with a maximum frequency of 1: the features' time derivatives are at most 1
    (O(1), not O(30)), so ∂_t s is as smooth as s."""
    assert vision.UNet(SHAPE).config["time_max_frequency"] == 1.0
    embedding = unet.SinusoidalTimeEmbedding(16)
    t = torch.linspace(0, 1, 11)
    slopes = torch.autograd.functional.jacobian(lambda u: embedding.features(u).sum(0), t)  # (16, 11)
    assert slopes.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(slopes[0], torch.cos(t))  # the fastest sine, d/dt sin(t)
    fast = unet.SinusoidalTimeEmbedding(16, max_frequency=30.0)
    assert torch.autograd.functional.jacobian(lambda u: fast.features(u).sum(0), t).abs().max() > 20


def test_unet_potential_reads_conditioning_channels_without_moving_them() -> None:
    torch.manual_seed(0)
    potential = vision.UNetPotential(SHAPE, cond_channels=1, base_channels=8)
    torch.nn.init.normal_(potential.unet.head.weight, std=0.1)
    assert potential.unet.in_channels == 2 and potential.unet.out_channels == 1
    x, t = torch.randn(3, 128, requires_grad=True), torch.rand(3)
    grad = torch.autograd.grad(potential(x, t).sum(), x)[0]
    assert torch.equal(grad[:, 64:], torch.zeros(3, 64)) and grad[:, :64].abs().max() > 0
    other = torch.cat([x[:, :64], torch.randn(3, 64)], dim=1)
    assert not torch.allclose(potential(other, t), potential(x, t))  # the output depends on them


def test_unet_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        vision.UNet((1, 6, 6), channel_mults=(1, 2, 2))


# ----------------------------------------------------------------------------- data
def test_embedded_datasets() -> None:
    digits = vision.load_digits()
    assert digits.images.shape == (1797, 1, 8, 8) and digits.levels == 17
    assert digits.images.min() == -1 and digits.images.max() == 1
    train, test = digits.split(0.25, seed=0)
    assert len(train) + len(test) == 1797
    patches = vision.load_sample_patches("test", size=16, n_patches=20)
    assert patches.images.shape == (20, 3, 16, 16) and patches.bin_width == pytest.approx(2 / 255)


def test_cifar10_reader_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, 3).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": pixels, b"labels": labels, b"batch_label": name.encode()}, f)
        written[name] = (pixels, labels)
    train = vision.load_cifar10(tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and train.levels == 256
    first_pixels, first_labels = written["data_batch_1"]
    np.testing.assert_array_equal(np.round((train.images[:3] + 1) * 127.5).astype(np.uint8).reshape(3, -1), first_pixels)
    np.testing.assert_array_equal(train.labels[:3], first_labels)
    test = vision.load_cifar10(folder, train=False, n=2)
    np.testing.assert_array_equal(test.labels, written["test_batch"][1][:2])
    with pytest.raises(FileNotFoundError):
        vision.load_cifar10(tmp_path / "missing")


def _write_idx(path, array: np.ndarray, compress: bool = False) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_reader_round_trip(tmp_path, compress: bool) -> None:
    rng = np.random.default_rng(1)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    _write_idx(raw / "t10k-images-idx3-ubyte", images, compress)
    _write_idx(raw / "t10k-labels-idx1-ubyte", labels, compress)
    data = vision.load_mnist(tmp_path, train=False)
    assert data.images.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(np.round((data.images[:, 0] + 1) * 127.5).astype(np.uint8), images)
    np.testing.assert_array_equal(data.labels, labels)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        vision.read_idx(tmp_path / "bad")


# ----------------------------------------------------------------------------- likelihood
class _GaussianFlowPotential(torch.nn.Module):
    """Exact action from N(0, I) at tau=0 to N(mu, sigma² I) at tau=1 along x = (1 - tau + tau sigma) z + tau mu.

    s = k/2 |x - tau mu|² + <mu, x>, k = (sigma - 1)/(1 - tau + tau sigma); div ∇s = d k, ∫ k = log sigma.
    """

    def __init__(self, mu: torch.Tensor, sigma: float):
        super().__init__()
        self.register_buffer("mu", mu)
        self.sigma = sigma

    def forward(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        k = (self.sigma - 1) / (1 - tau + tau * self.sigma)
        return 0.5 * k * ((x - tau[:, None] * self.mu) ** 2).sum(1) + (x * self.mu).sum(1)


@pytest.mark.parametrize("divergence", ["exact", "hutchinson"])
def test_bits_per_dim_of_a_known_gaussian(divergence: str) -> None:
    d, sigma, width = 6, 0.5, 2 / 255
    mu = torch.linspace(-1, 1, d)
    potential = _GaussianFlowPotential(mu, sigma)
    x = mu + sigma * torch.randn(20, d, generator=torch.Generator().manual_seed(0))
    prior = vision.LinearPath(torch.zeros(1, 1, 2, 3))
    logp = vision.log_likelihood(vision.potential_field(potential), x, prior.log_prior, n_steps=20, divergence=divergence)
    exact = stats.norm(mu.numpy(), sigma).logpdf(x.numpy()).sum(1)
    np.testing.assert_allclose(logp.numpy(), exact, atol=1e-4)
    bpd = vision.bits_per_dim(logp, d, bin_width=width)
    np.testing.assert_allclose(bpd, -(exact + d * math.log(width)) / (d * math.log(2)), atol=1e-4)
    # the estimator's own change of variables agrees
    est = tj.ActionMatching.from_potential(potential, dim=d, device="cpu")

    def log_q0(a: np.ndarray) -> np.ndarray:
        return prior.log_prior(torch.as_tensor(a)).numpy()

    np.testing.assert_allclose(est.log_likelihood(x.numpy(), log_q0, n_steps=20, solver="rk4"), exact, atol=1e-4)


def test_ode_sample_transports_the_known_gaussian() -> None:
    mu = torch.tensor([1.0, -2.0])
    field = vision.potential_field(_GaussianFlowPotential(mu, 0.5), create_graph=False)
    z = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    for solver in ("euler", "rk4"):
        end = vision.ode_sample(field, z, n_steps=200 if solver == "euler" else 20, solver=solver)
        torch.testing.assert_close(end, mu + 0.5 * z, atol=2e-3 if solver == "euler" else 1e-5, rtol=0)
    back = vision.ode_sample(field, mu + 0.5 * z, tau_start=1.0, tau_end=0.0, n_steps=20)
    torch.testing.assert_close(back, z, atol=1e-5, rtol=0)
    assert vision.n_function_evaluations("rk4", 20) == 80
    with pytest.warns(FutureWarning, match="solver"):
        torch.testing.assert_close(vision.ode_sample(field, z, n_steps=3, method="midpoint"), vision.ode_sample(field, z, n_steps=3, solver="midpoint"))
    with pytest.warns(FutureWarning, match="solver"):
        assert vision.n_function_evaluations(method="midpoint", n_steps=5) == 10
    with pytest.raises(ValueError, match="Unknown solver"):
        vision.ode_sample(field, z, solver="rk45")


# ----------------------------------------------------------------------------- metrics
def test_frechet_distance_closed_form() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 3))
    b = rng.normal(size=(20000, 3)) * 2 + np.array([1.0, 0.0, 0.0])
    # |Δμ|² + Σ (1 + 4 − 2·2) = 1 + 3
    assert vision.frechet_distance(a, b) == pytest.approx(4.0, rel=0.05)
    assert vision.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)


def test_feature_classifier_and_scores() -> None:
    digits = vision.load_digits().subset(slice(0, 300))
    model = vision.train_feature_classifier(digits.images, digits.labels, n_epochs=10, batch_size=32, width=16)
    assert vision.classifier_features(model, digits.flat[:7]).shape == (7, 16)
    assert vision.classifier_accuracy(model, digits.images, digits.labels) > 0.3
    fd_same = vision.classifier_fd(model, digits.images[:150], digits.images[150:])
    fd_noise = vision.classifier_fd(model, digits.images[:150], np.random.default_rng(0).uniform(-1, 1, (150, 1, 8, 8)))
    assert fd_same < fd_noise
    assert 1.0 <= vision.classifier_score(model, digits.images) <= 10.0
    images, labels = vision.rotation_labels(digits.images[:4], digits.labels[:4])
    assert images.shape == (16, 1, 8, 8) and labels.max() == 4 * digits.labels[:4].max() + 3
    assert vision.inception_fid(digits.images[:4], digits.images[:4]) is None or vision.inception_weights_available()


def test_save_image_grid(tmp_path) -> None:
    out = vision.save_image_grid(tmp_path / "grid.png", _images(5, RGB).reshape(5, -1), RGB, ncol=3, scale=2)
    import matplotlib.image

    picture = matplotlib.image.imread(out)
    assert picture.shape[:2] == (2 * (2 * 9 + 1), 2 * (3 * 9 + 1))
    assert vision.image_grid(_images(2, SHAPE)).ndim == 2


# ----------------------------------------------------------------------------- fits
def test_front_end_sets_the_authors_training_choices() -> None:
    path = vision.SuperResolutionPath(_images(6, SHAPE))
    est = vision.action_matching(path, unet={"base_channels": 8}, n_iter=3)
    potential = est.get_params()["potential"]
    assert potential.cond_channels == 1 and not potential.periodic
    assert est.time_weight is None and est.time_proposal == "quasi-uniform" and est.n_iter == 3
    torus = vision.TorusPath(_images(6, SHAPE))
    est = vision.action_matching(torus, unet={"base_channels": 8}, time_proposal="uniform")
    assert est.get_params()["potential"].periodic and est.time_weight == torus.time_weight
    assert est.time_proposal == "uniform"
    with pytest.raises(ValueError, match="unet"):
        vision.action_matching(torus, potential=vision.UNetPotential(SHAPE), unet={"base_channels": 8})
    # run-time settings go into run=, on top of a run given as well
    est = vision.action_matching(torus, unet={"base_channels": 8}, device="cpu", run={"progress": False, "device": "cuda"})
    assert est.run == tj.RunConfig(device="cpu", progress=False)


def test_unet_potential_fits_through_the_estimator() -> None:
    digits = vision.load_digits()
    path = vision.LinearPath(digits.images[:64], bin_width=digits.bin_width)
    est = vision.action_matching(
        path, unet={"base_channels": 8}, n_iter=4, batch_size=8, device="cpu", progress=False,
    ).fit(path)
    assert np.isfinite(est.loss_curve_).all() and est.n_iter_ == 4
    traj = est.simulate(path.prior_sample(3).numpy(), 0.0, 1.0, n_steps=3, solver="rk4")
    assert traj.X.shape == (4, 3, 64) and np.isfinite(traj.X).all()
    logp = vision.log_likelihood(vision.potential_field(est.potential_), path.data[:2], path.log_prior, n_steps=2)
    assert torch.isfinite(logp).all()


@pytest.mark.parametrize("task", ["generation", "vpsde", "superres", "torus"])
def test_conditional_velocity_matches_finite_differences(task: str) -> None:
    path = vision.make_path(task, _images(6, SHAPE))
    x0, x1 = _pair(path, n=5)
    tau = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    xt, velocity = vision.conditional_velocity(path, x0, x1, tau)
    torch.testing.assert_close(xt, path.interpolate(x0, x1, tau))
    h = 1e-3
    fd = (path.interpolate(x0, x1, tau + h) - path.interpolate(x0, x1, tau - h)) / (2 * h)
    if task == "torus":
        fd = vision.wrap_angle(fd * 2 * h) / (2 * h)
    torch.testing.assert_close(velocity, fd, atol=2e-2, rtol=1e-2)
    if task == "generation":
        torch.testing.assert_close(velocity, x1 - x0)


def test_baselines_run() -> None:
    digits = vision.load_digits()
    path = vision.LinearPath(digits.images[:64])
    fm = vision.FlowMatching(vision.UNet(SHAPE, base_channels=8), n_iter=3, batch_size=8, device="cpu", progress=False).fit(path)
    out = vision.ode_sample(fm.field(), path.prior_sample(2), n_steps=2)
    assert out.shape == (2, 64) and torch.isfinite(out).all()
    ssm = vision.SlicedScoreMatching(vision.UNet(SHAPE, base_channels=8), n_iter=3, batch_size=8, device="cpu", progress=False)
    ssm.fit(path)
    samples = vision.annealed_langevin_dynamics(
        ssm.score(path), path.prior_sample(2), path.noise_scale, n_levels=3, steps_per_level=2, final_steps=2,
    )
    assert samples.shape == (2, 64) and torch.isfinite(samples).all()


@pytest.mark.parametrize("cls", [vision.FlowMatching, vision.SlicedScoreMatching])
def test_baseline_refit_starts_from_the_constructor_network(cls: type) -> None:
    """fit trains a copy: the given network keeps its weights and a refit with the same seed repeats the fit."""
    torch.manual_seed(0)
    network = vision.UNet(SHAPE, base_channels=8)
    initial = {k: v.clone() for k, v in network.state_dict().items()}
    model = cls(network, n_iter=3, batch_size=8, device="cpu", progress=False)
    path = vision.LinearPath(_images(16, SHAPE))
    first = {k: v.clone() for k, v in model.fit(path).network_.state_dict().items()}
    assert model.network_ is not network
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, initial[key], rtol=0, atol=0)
    second = model.fit(path).network_.state_dict()
    assert any(not torch.equal(first[key], initial[key]) for key in first)
    for key, value in second.items():
        torch.testing.assert_close(value, first[key], rtol=0, atol=0)


@pytest.mark.parametrize("cls", [vision.FlowMatching, vision.SlicedScoreMatching])
def test_diverging_baseline_restores_finite_weights(cls: type) -> None:
    """A huge learning rate overflows the loss within two steps; the fit stops with a
    DivergenceError and the network is left with the healthy weights it started from."""
    torch.manual_seed(0)
    network = vision.UNet(SHAPE, base_channels=8)
    initial = {k: v.clone() for k, v in network.state_dict().items()}
    model = cls(network, n_iter=50, batch_size=8, lr=1e6, device="cpu", progress=False)
    with pytest.raises(DivergenceError, match="before the divergence") as info:
        model.fit(vision.LinearPath(_images(16, SHAPE)))
    assert info.value.reason == "non-finite loss"
    assert all(torch.isfinite(p).all() for p in model.network_.parameters())
    for key, value in model.network_.state_dict().items():
        torch.testing.assert_close(value, initial[key])
    assert len(model.loss_curve_) == model.n_iter_ < 50
