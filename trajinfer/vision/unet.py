"""U-Net image networks and the U-Net potential ``s_t(x) = <unet(t, x), x>`` (paper App. E.2).

The architecture follows the DDPM / score-SDE U-Net at small scale: a sinusoidal time
embedding, residual blocks with GroupNorm and SiLU that receive the embedding, self-attention at
the low resolutions, strided-convolution downsampling and nearest-neighbour upsampling with skip
connections. All normalisation is per sample (GroupNorm), so each output depends only on its own
input row, as Action Matching's per-sample derivatives require. Inputs and outputs are flat,
``(B, C*H*W)``, with the image shape given at construction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["AttentionBlock", "ResidualBlock", "SinusoidalTimeEmbedding", "UNet", "UNetPotential", "count_parameters"]


def _groups(channels: int, max_groups: int) -> int:
    """Largest divisor of ``channels`` not above ``max_groups``."""
    return max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)


class SinusoidalTimeEmbedding(nn.Module):
    """Sinusoidal embedding of a time in [0, 1] followed by a 2-layer MLP.

    Frequencies are geometric from ``max_frequency / 10^4`` to ``max_frequency`` (radians per
    unit time). The default, 1, is the DDPM embedding fed the raw time ``t ∈ [0, 1]``, as the
    Action Matching authors do: every feature and its time derivative are at most 1 in size, so
    ``∂_t s``, which the loss integrates, is as smooth as ``s`` and the MLP builds the time
    dependence. A maximum of 30 makes the features' time derivatives up to 30 times larger than
    the features and ``∂_t s`` that much rougher.
    """

    def __init__(self, dim: int, max_frequency: float = 1.0):
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"The time embedding dimension must be even and >= 2, got {dim}.")
        half = dim // 2
        self.register_buffer("frequencies", torch.exp(-math.log(10000.0) * torch.arange(half) / max(half - 1, 1)))
        self.max_frequency = float(max_frequency)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.SiLU(), nn.Linear(4 * dim, 4 * dim))
        self.out_features = 4 * dim

    def features(self, t: torch.Tensor) -> torch.Tensor:
        """The sine and cosine features of times ``t`` (B,) -> (B, dim), before the MLP."""
        angles = self.max_frequency * t[:, None] * self.frequencies
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(t))


class ResidualBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added in between, and a skip."""

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, max_groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels, max_groups), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embed = nn.Linear(embed_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels, max_groups), out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(F.silu(emb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the spatial positions of one image."""

    def __init__(self, channels: int, max_groups: int):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels, max_groups), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(dim=1)
        weights = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bij,bcj->bci", weights, v).reshape(b, c, h, w)
        return x + self.proj(out)


class UNet(nn.Module):
    """Time-conditioned U-Net mapping flat images to flat images.

    Parameters
    ----------
    image_shape
        ``(C, H, W)`` of the inputs; ``H`` and ``W`` must be divisible by
        ``2 ** (len(channel_mults) - 1)``.
    base_channels
        Width of the first level.
    channel_mults
        Width multiplier per resolution level (each further level halves the resolution).
    num_res_blocks
        Residual blocks per level on the way down (one more on the way up).
    attention_resolutions
        Spatial sizes (side length) at which self-attention is applied; ``None`` means the
        lowest resolution only. The middle block always has attention.
    dropout
        Dropout rate inside residual blocks.
    max_groups
        Upper bound on the GroupNorm group count.
    in_channels, out_channels
        Channels of the input and output images; default ``C``.
    time_embed_dim
        Dimension of the sinusoidal embedding (the MLP widens it 4×); default ``base_channels``.
    time_max_frequency
        Highest frequency of the sinusoidal time features (see :class:`SinusoidalTimeEmbedding`).

    Notes
    -----
    The final convolution starts at zero, so an untrained network outputs zero.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        *,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2),
        num_res_blocks: int = 1,
        attention_resolutions: Sequence[int] | None = None,
        dropout: float = 0.0,
        max_groups: int = 8,
        in_channels: int | None = None,
        out_channels: int | None = None,
        time_embed_dim: int | None = None,
        time_max_frequency: float = 1.0,
    ):
        super().__init__()
        if len(image_shape) != 3:
            raise ValueError(f"image_shape must be (C, H, W), got {tuple(image_shape)}.")
        c, h, w = (int(s) for s in image_shape)
        n_levels = len(channel_mults)
        if n_levels < 1 or num_res_blocks < 1 or base_channels < 1:
            raise ValueError("Need at least one level, one residual block per level and positive widths.")
        factor = 2 ** (n_levels - 1)
        if h % factor or w % factor:
            raise ValueError(f"Image size {h}×{w} is not divisible by {factor} ({n_levels} levels).")
        lowest = min(h, w) // factor
        attention = {lowest} if attention_resolutions is None else {int(r) for r in attention_resolutions}
        self.config: dict[str, Any] = {
            "image_shape": [c, h, w], "base_channels": int(base_channels), "channel_mults": [int(m) for m in channel_mults],
            "num_res_blocks": int(num_res_blocks), "attention_resolutions": sorted(attention), "dropout": float(dropout),
            "max_groups": int(max_groups), "in_channels": in_channels, "out_channels": out_channels,
            "time_embed_dim": time_embed_dim, "time_max_frequency": float(time_max_frequency),
        }
        self.image_shape = (c, h, w)
        self.in_channels = c if in_channels is None else int(in_channels)
        self.out_channels = c if out_channels is None else int(out_channels)
        self.time_embedding = SinusoidalTimeEmbedding(time_embed_dim or base_channels, time_max_frequency)
        emb = self.time_embedding.out_features

        self.stem = nn.Conv2d(self.in_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips = [base_channels]
        ch, size = base_channels, min(h, w)
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                out = base_channels * mult
                blocks = [ResidualBlock(ch, out, emb, max_groups, dropout)]
                if size in attention:
                    blocks.append(AttentionBlock(out, max_groups))
                self.down.append(nn.ModuleList(blocks))
                ch = out
                skips.append(ch)
            if level < n_levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)
                size //= 2
        self.middle = nn.ModuleList([
            ResidualBlock(ch, ch, emb, max_groups, dropout), AttentionBlock(ch, max_groups),
            ResidualBlock(ch, ch, emb, max_groups, dropout),
        ])
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                out = base_channels * mult
                blocks = [ResidualBlock(ch + skips.pop(), out, emb, max_groups, dropout)]
                if size in attention:
                    blocks.append(AttentionBlock(out, max_groups))
                self.up.append(nn.ModuleList(blocks))
                ch = out
            if level > 0:
                self.up.append(nn.ModuleList([nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch, 3, padding=1)]))
                size *= 2
        self.head_norm = nn.GroupNorm(_groups(ch, max_groups), ch)
        self.head = nn.Conv2d(ch, self.out_channels, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @staticmethod
    def _run(blocks: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for block in blocks:
            h = block(h, emb) if isinstance(block, ResidualBlock) else block(h)
        return h

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Map flat images ``x`` (B, in_channels*H*W) at times ``t`` (B,) to (B, out_channels*H*W)."""
        _, h, w = self.image_shape
        emb = self.time_embedding(t.reshape(-1).to(x.dtype))
        hidden = self.stem(x.reshape(x.shape[0], self.in_channels, h, w))
        stack = [hidden]
        for blocks in self.down:
            hidden = self._run(blocks, hidden, emb)
            stack.append(hidden)
        hidden = self._run(self.middle, hidden, emb)
        for blocks in self.up:
            if isinstance(blocks[0], ResidualBlock):
                hidden = torch.cat([hidden, stack.pop()], dim=1)
            hidden = self._run(blocks, hidden, emb)
        out = self.head(F.silu(self.head_norm(hidden)))
        return out.reshape(x.shape[0], -1)


class UNetPotential(nn.Module):
    """Scalar potential ``s_t(x) = <unet(t, x), x>`` on flat images.

    Parameters
    ----------
    image_shape
        ``(C, H, W)`` of the generated image.
    cond_channels
        Conditioning channels that follow the image in each state (a low-resolution or
        grayscale observation, see :mod:`trajinfer.vision.interpolants`). The U-Net reads them
        as extra input channels with their gradient stopped, ``s = <unet(t, [x, sg(c)]), x>``:
        their velocity ``∇_c s`` is zero, so they stay the observation.
    periodic
        For data on the torus: the network sees ``φ(x) = (cos x, sin x)`` (2C channels) and
        ``s = <unet(t, φ(x)), φ(x)>``, which is 2π-periodic in every pixel, so the velocity
        ``∇s`` is a field on the torus.
    unet_kwargs
        Passed to :class:`UNet` (``base_channels``, ``channel_mults``, ``num_res_blocks``,
        ``attention_resolutions``, ``dropout``, ``max_groups``, ``time_embed_dim``,
        ``time_max_frequency``).

    Notes
    -----
    ``forward(x, t)`` takes ``x`` of shape (B, (C + cond_channels)*H*W) and internal time ``t``
    (B,) in [0, 1] and returns (B,), the signature :class:`trajinfer.ActionMatching` expects of
    a potential.
    """

    def __init__(self, image_shape: Sequence[int], *, cond_channels: int = 0, periodic: bool = False, **unet_kwargs: Any):
        super().__init__()
        if cond_channels < 0:
            raise ValueError(f"cond_channels must be non-negative, got {cond_channels}.")
        c = int(image_shape[0])
        channels = 2 * c if periodic else c
        self.periodic = bool(periodic)
        self.cond_channels = int(cond_channels)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.image_dim = math.prod(self.image_shape)
        self.unet = UNet(image_shape, in_channels=channels + self.cond_channels, out_channels=channels, **unet_kwargs)
        self.config = {"periodic": self.periodic, "cond_channels": self.cond_channels, **self.unet.config}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Network input: ``x`` itself, or per-channel ``(cos x, sin x)`` when periodic."""
        if not self.periodic:
            return x
        c, h, w = self.image_shape
        images = x.reshape(-1, c, h, w)
        return torch.cat([torch.cos(images), torch.sin(images)], dim=1).reshape(x.shape[0], -1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        features = self.features(x[:, : self.image_dim])
        inputs = torch.cat([features, x[:, self.image_dim :].detach()], dim=1) if self.cond_channels else features
        return (self.unet(inputs, t) * features).sum(dim=1)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (trainable or frozen)."""
    return sum(p.numel() for p in module.parameters())
