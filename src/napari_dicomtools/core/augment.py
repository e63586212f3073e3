"""Seeded, reproducible augmentation of an image and its labels together (numpy/scipy only).

Every sample's parameters are drawn from ``numpy.random.default_rng(seed)`` and returned, so
a sample can be regenerated exactly; geometric transforms act on image and labels alike
(labels with nearest-neighbour), intensity transforms on the image only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["AugmentConfig", "apply", "augment", "config_dict", "draw_params"]

#: one sample's parameters: plain numbers, JSON-serializable
Params = dict[str, Any]


@dataclass
class AugmentConfig:
    """What may happen to a sample (all in-plane for 3D: the last two axes)."""

    flip: bool = True  # left-right / up-down flips
    rot90: bool = True  # quarter turns (half turns for non-square planes: shape kept)
    max_angle_deg: float = 10.0  # small rotations, uniform in [-a, a]
    brightness: float = 0.1  # shift, as a fraction of the intensity range
    contrast: float = 0.1  # scale around the mean, 1 +/- c
    gamma: tuple[float, float] = (0.8, 1.25)  # on the range-normalized image
    noise_sigma: float = 0.0  # Gaussian noise, in image units (HU)
    crop_shape: tuple[int, int] | None = None  # random crop of this in-plane size


def draw_params(rng: np.random.Generator, shape: tuple[int, ...], cfg: AugmentConfig) -> Params:
    """One sample's parameters (plain numbers: JSON-serializable)."""
    p: Params = {
        "flip_rows": bool(cfg.flip and rng.random() < 0.5),
        "flip_cols": bool(cfg.flip and rng.random() < 0.5),
        # quarter turns keep the shape only for square planes: half turns otherwise
        "rot90": (int(rng.integers(0, 4)) if shape[-1] == shape[-2] else
                  2 * int(rng.integers(0, 2))) if cfg.rot90 else 0,
        "angle_deg": float(rng.uniform(-cfg.max_angle_deg, cfg.max_angle_deg))
        if cfg.max_angle_deg else 0.0,
        "brightness": float(rng.uniform(-cfg.brightness, cfg.brightness)),
        "contrast": float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
        "gamma": float(np.exp(rng.uniform(np.log(cfg.gamma[0]), np.log(cfg.gamma[1])))),
        "noise_seed": int(rng.integers(0, 2**31 - 1)),
        "noise_sigma": float(cfg.noise_sigma),
        "crop": None,
    }
    if cfg.crop_shape is not None:
        h, w = shape[-2:]
        ch, cw = (int(v) for v in cfg.crop_shape)
        if ch > h or cw > w:
            raise ValueError(f"crop {cfg.crop_shape} larger than the image plane {(h, w)}")
        p["crop"] = (int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch,
                     cw)
    return p


def apply(image: ArrayLike, labels: ArrayLike | None,
          params: Params) -> tuple[NDArray[np.float32], NDArray[Any] | None]:
    """Apply one sample's ``params`` to ``image`` (and ``labels``); returns both."""
    from scipy import ndimage

    img = np.asarray(image)
    lab = None if labels is None else np.asarray(labels)
    if lab is not None and lab.shape != img.shape:
        raise ValueError(f"labels shape {lab.shape} differs from image {img.shape}")
    lo, hi = float(img.min()), float(img.max())
    out = img.astype(np.float32)

    def geo(a: NDArray[Any], order: int, cval: float) -> NDArray[Any]:
        if params["flip_rows"]:
            a = a[..., ::-1, :]
        if params["flip_cols"]:
            a = a[..., :, ::-1]
        if params["rot90"]:
            a = np.rot90(a, params["rot90"], axes=(-2, -1))
        if params["angle_deg"]:
            a = ndimage.rotate(a, params["angle_deg"], axes=(-2, -1), reshape=False,
                               order=order, mode="constant", cval=cval)
        if params["crop"] is not None:
            r0, c0, ch, cw = params["crop"]
            a = a[..., r0:r0 + ch, c0:c0 + cw]
        return np.ascontiguousarray(a)

    out = geo(out, 1, lo)
    if lab is not None:
        lab = geo(lab, 0, 0)
    rng_span = hi - lo if hi > lo else 1.0
    # intensity: gamma on 0..1, then contrast around the mean, brightness, noise
    norm = np.clip((out - lo) / rng_span, 0, 1) ** params["gamma"]
    out = norm * rng_span + lo
    mean = float(out.mean())
    out = (out - mean) * params["contrast"] + mean + params["brightness"] * rng_span
    if params["noise_sigma"] > 0:
        noise = np.random.default_rng(params["noise_seed"]).normal(0, params["noise_sigma"],
                                                                    out.shape)
        out = out + noise.astype(np.float32)
    return out.astype(np.float32), lab


def augment(image: ArrayLike, labels: ArrayLike | None = None, *, n: int = 1, seed: int = 0,
            config: AugmentConfig | None = None,
            ) -> list[tuple[NDArray[np.float32], NDArray[Any] | None, Params]]:
    """``n`` augmented samples ``(image, labels, params)``: the same seed gives the same
    samples, and ``apply(image, labels, params)`` regenerates any one of them."""
    cfg = config or AugmentConfig()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        p = draw_params(rng, np.shape(image), cfg)
        a, b = apply(image, labels, p)
        out.append((a, b, p))
    return out


def config_dict(cfg: AugmentConfig) -> dict[str, Any]:
    """The configuration as a plain dict (for a dataset's JSON record)."""
    return asdict(cfg)
