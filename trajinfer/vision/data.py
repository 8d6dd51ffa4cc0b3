"""Image data sets in [-1, 1], channels-first: embedded ones and readers of local copies.

- :func:`load_digits`: scikit-learn's 8×8 handwritten digits (1,797 images, 17 grey levels).
- :func:`load_sample_patches`: 32×32 colour patches cut from scikit-learn's two sample photos,
  with disjoint train and test regions (for colorization).
- :func:`load_cifar10`, :func:`load_mnist`: read a local copy in torchvision's on-disk format
  (CIFAR-10 python pickle batches, MNIST idx files) with NumPy only; nothing is downloaded.

Pixel values take ``levels`` values ``-1 + 2k/(levels - 1)``; :attr:`ImageDataset.bin_width`
is the spacing used for dequantisation and bits per dimension.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10_FOLDER", "CIFAR10_TEST_BATCHES", "CIFAR10_TRAIN_BATCHES", "MNIST_FILES", "ImageDataset",
    "load_cifar10", "load_digits", "load_mnist", "load_sample_patches", "read_idx",
]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_BATCHES = ("test_batch",)
MNIST_FILES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class ImageDataset:
    """Images in [-1, 1] with optional labels.

    Attributes
    ----------
    images
        Array of shape (N, C, H, W), float32.
    labels
        Integer labels (N,) or ``None``.
    levels
        Number of quantisation levels of the source data (17 for digits, 256 for 8-bit images).
    name
        Short name used in reports.
    """

    images: np.ndarray
    labels: np.ndarray | None
    levels: int
    name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])  # type: ignore[return-value]

    @property
    def flat(self) -> np.ndarray:
        """Images flattened to (N, C*H*W)."""
        return self.images.reshape(self.images.shape[0], -1)

    @property
    def bin_width(self) -> float:
        """Spacing of the pixel grid in [-1, 1]: ``2 / (levels - 1)``."""
        return 2.0 / (self.levels - 1)

    @property
    def n_classes(self) -> int:
        return 0 if self.labels is None else int(self.labels.max()) + 1

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray | slice) -> ImageDataset:
        """The images (and labels) at ``index``."""
        labels = None if self.labels is None else self.labels[index]
        return ImageDataset(self.images[index], labels, self.levels, self.name)

    def split(self, test_fraction: float = 0.2, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """Random train/test split."""
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}.")
        order = np.random.default_rng(seed).permutation(len(self))
        n_test = max(1, int(round(test_fraction * len(self))))
        return self.subset(np.sort(order[n_test:])), self.subset(np.sort(order[:n_test]))


def _scale(values: np.ndarray, levels: int) -> np.ndarray:
    """Integer pixel values in [0, levels - 1] -> float32 in [-1, 1]."""
    return (2.0 * values.astype(np.float32) / (levels - 1) - 1.0).astype(np.float32)


def load_digits() -> ImageDataset:
    """scikit-learn's handwritten digits: (1797, 1, 8, 8) in [-1, 1], 10 classes, 17 levels."""
    from sklearn.datasets import load_digits as _load

    bunch = _load()
    images = _scale(bunch.images.round(), 17)[:, None]
    return ImageDataset(images, bunch.target.astype(np.int64), 17, "digits")


def load_sample_patches(
    split: str = "train", size: int = 32, n_patches: int = 2000, stride: int | None = None,
    test_fraction: float = 0.25, seed: int = 0,
) -> ImageDataset:
    """Colour patches cut from scikit-learn's sample images (``china.jpg``, ``flower.jpg``).

    The right-most ``test_fraction`` of each photo's columns is reserved for ``split="test"``,
    so train and test patches never overlap. Labels say which photo a patch comes from.

    Parameters
    ----------
    split
        ``"train"`` or ``"test"``.
    size
        Patch side in pixels.
    n_patches
        Number of patches, drawn at random positions (without replacement among the grid of
        positions spaced ``stride`` apart); fewer if the region holds fewer.
    stride
        Spacing of candidate positions; default ``size // 4``.
    test_fraction
        Share of each photo's width held out for the test split.
    seed
        Seed of the position draw.
    """
    from sklearn.datasets import load_sample_images

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    stride = max(1, size // 4) if stride is None else int(stride)
    candidates = []
    photos = load_sample_images().images
    for label, photo in enumerate(photos):
        h, w, _ = photo.shape
        cut = int(round(w * (1 - test_fraction)))
        lo, hi = (0, cut) if split == "train" else (cut, w)
        for top in range(0, h - size + 1, stride):
            for left in range(lo, hi - size + 1, stride):
                candidates.append((label, top, left))
    if not candidates:
        raise ValueError(f"No {size}×{size} patch fits the {split} region.")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(candidates), size=min(n_patches, len(candidates)), replace=False)
    patches, labels = [], []
    for i in np.sort(chosen):
        label, top, left = candidates[i]
        patches.append(photos[label][top : top + size, left : left + size].transpose(2, 0, 1))
        labels.append(label)
    return ImageDataset(_scale(np.stack(patches), 256), np.asarray(labels, dtype=np.int64), 256, "sample-patches")


def _find(root: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"None of {list(names)} (or .gz) found in {root}.")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (MNIST format), optionally gzip-compressed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an idx file (bad magic number).")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    offset = 4 + 4 * ndim
    count = int(np.prod(shape)) if shape else 1
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"{path}: header promises shape {shape} but the payload has {len(raw) - offset} bytes.")
    return np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist(root: str | Path, train: bool = True, n: int | None = None) -> ImageDataset:
    """Read a local MNIST copy: (N, 1, 28, 28) in [-1, 1], 256 levels.

    Parameters
    ----------
    root
        A folder holding the idx files, or torchvision's ``root`` (with ``MNIST/raw`` inside).
    train
        Training (60k) or test (10k) split.
    n
        Keep only the first ``n`` images.
    """
    root = Path(root)
    folder = next((p for p in (root / "MNIST" / "raw", root / "raw", root) if p.is_dir()), None)
    if folder is None:
        raise FileNotFoundError(f"MNIST folder {root} does not exist.")
    image_name, label_name = MNIST_FILES[bool(train)]
    images = read_idx(_find(folder, (image_name, image_name.replace("-idx3-", ".idx3-"))))
    labels = read_idx(_find(folder, (label_name, label_name.replace("-idx1-", ".idx1-"))))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise ValueError(f"MNIST files in {folder} have inconsistent shapes {images.shape} and {labels.shape}.")
    images, labels = images[:n], labels[:n]
    return ImageDataset(_scale(images, 256)[:, None], labels.astype(np.int64), 256, "mnist")


def load_cifar10(root: str | Path, train: bool = True, n: int | None = None) -> ImageDataset:
    """Read a local CIFAR-10 copy (python pickle batches): (N, 3, 32, 32) in [-1, 1], 256 levels.

    Parameters
    ----------
    root
        The ``cifar-10-batches-py`` folder or its parent (torchvision's ``root``).
    train
        The five training batches (50k) or the test batch (10k).
    n
        Keep only the first ``n`` images.

    Notes
    -----
    The batches are Python pickles, which can run code when loaded: read only copies you trust.
    """
    root = Path(root)
    folder = root / CIFAR10_FOLDER if (root / CIFAR10_FOLDER).is_dir() else root
    names = CIFAR10_TRAIN_BATCHES if train else CIFAR10_TEST_BATCHES
    images, labels = [], []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"CIFAR-10 batch {path} not found; expected torchvision's '{CIFAR10_FOLDER}' layout.")
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        if n is not None and sum(len(x) for x in images) >= n:
            break
    pixels, targets = np.concatenate(images)[:n], np.concatenate(labels)[:n]
    return ImageDataset(_scale(pixels, 256), targets, 256, "cifar10")
