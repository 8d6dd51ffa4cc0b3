"""Image experiments of Action Matching (paper Sec. 4.3): interpolant paths, a U-Net potential,
embedded and local image data sets, likelihood and Fréchet-distance metrics, baselines and plots.

Typical use::

    from trajinfer import vision

    data = vision.load_digits()
    path = vision.LinearPath(data.images, bin_width=data.bin_width)
    est = vision.action_matching(path, unet={"base_channels": 16}, n_iter=2000, batch_size=64).fit(path)
    x = est.simulate(path.prior_sample(64).cpu(), 0.0, 1.0, n_steps=50, solver="rk4").X[-1]

:func:`action_matching` sets the authors' training choices: the path's loss weight
(``ω = 1 - tau`` on linear-type paths), quasi-uniform times, coupled minibatches (each path's
``sample_triplet``) and a U-Net potential reading the path's conditioning channels.
"""

from .baselines import (
    FlowMatching,
    SlicedScoreMatching,
    annealed_langevin_dynamics,
    conditional_velocity,
)
from .data import (
    ImageDataset,
    load_cifar10,
    load_digits,
    load_mnist,
    load_sample_patches,
    read_idx,
)
from .interpolants import (
    ColorizationPath,
    InpaintingPath,
    InterpolantPath,
    LinearPath,
    MaskedPath,
    SuperResolutionPath,
    TorusPath,
    VPSDEPath,
    action_matching,
    grayscale,
    inpainting_mask,
    make_path,
    superresolution_mask,
    wrap_angle,
)
from .metrics import (
    FeatureClassifier,
    bits_per_dim,
    classifier_accuracy,
    classifier_fd,
    classifier_features,
    classifier_score,
    dequantize,
    frechet_distance,
    inception_fid,
    inception_weights_available,
    log_likelihood,
    module_field,
    n_function_evaluations,
    ode_sample,
    potential_field,
    rotation_labels,
    train_feature_classifier,
)
from .plotting import image_grid, save_image_grid
from .unet import UNet, UNetPotential, count_parameters

__all__ = [
    "ColorizationPath", "FeatureClassifier", "FlowMatching", "ImageDataset", "InpaintingPath",
    "InterpolantPath", "LinearPath", "MaskedPath", "SlicedScoreMatching", "SuperResolutionPath",
    "TorusPath", "UNet", "UNetPotential", "VPSDEPath", "action_matching", "annealed_langevin_dynamics", "bits_per_dim",
    "classifier_accuracy", "classifier_fd", "conditional_velocity", "classifier_features", "classifier_score", "count_parameters",
    "dequantize", "frechet_distance", "grayscale", "image_grid", "inception_fid",
    "inception_weights_available", "inpainting_mask", "load_cifar10", "load_digits", "load_mnist",
    "load_sample_patches", "log_likelihood", "make_path", "module_field", "n_function_evaluations",
    "ode_sample", "potential_field", "read_idx", "rotation_labels", "save_image_grid",
    "superresolution_mask", "train_feature_classifier", "wrap_angle",
]
