"""Seeded, reproducible augmentation of an image and its labels together (numpy/scipy only).

Every sample's parameters are drawn from ``numpy.random.default_rng(seed)`` and returned, so
a sample can be regenerated exactly; geometric transforms act on image and labels alike
(labels with nearest-neighbour), intensity transforms on the image only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["AugmentConfig", "AugmentParams", "apply", "augment", "config_dict", "draw_params"]


class AugmentParams(TypedDict):
    """One sample's parameters, drawn by :func:`draw_params`: plain numbers, so a dataset's
    JSON record can hold them and :func:`apply` regenerate the sample.

    Attributes
    ----------
    flip_rows : bool
        Flip up-down (the row axis).
    flip_cols : bool
        Flip left-right (the column axis).
    rot90 : int
        Quarter turns in the plane of the last two axes.
    angle_deg : float
        Rotation in that plane, degrees (linear for the image, nearest for labels).
    brightness : float
        Shift, as a fraction of the image's intensity range.
    contrast : float
        Scale around the mean.
    gamma : float
        Gamma on the range-normalized image.
    noise_seed : int
        Seed of the Gaussian noise.
    noise_sigma : float
        Noise standard deviation in image units (0: none).
    crop : tuple of 4 int or None
        ``(first row, first column, rows, columns)`` of the crop, or None.

    Examples
    --------
    >>> p = draw_params(np.random.default_rng(0), (8, 8), AugmentConfig(crop_shape=(4, 4)))
    >>> sorted(p)[:4], len(p["crop"])
    (['angle_deg', 'brightness', 'contrast', 'crop'], 4)
    """

    flip_rows: bool
    flip_cols: bool
    rot90: int
    angle_deg: float
    brightness: float
    contrast: float
    gamma: float
    noise_seed: int
    noise_sigma: float
    crop: tuple[int, int, int, int] | None


@dataclass
class AugmentConfig:
    """What may happen to a sample (all in-plane for 3D: the last two axes).

    Parameters
    ----------
    flip : bool, optional
        Random left-right and up-down flips (each with probability 1/2).
    rot90 : bool, optional
        Random quarter turns (half turns for non-square planes, so the shape is kept).
    max_angle_deg : float, optional
        Small rotations, uniform in ``[-max_angle_deg, max_angle_deg]`` degrees (0: none).
    brightness : float, optional
        Shift, uniform in ``[-brightness, brightness]`` times the intensity range.
    contrast : float, optional
        Scale around the mean, uniform in ``1 +/- contrast``.
    gamma : tuple of 2 float, optional
        Range of the gamma applied to the range-normalized image (log-uniform).
    noise_sigma : float, optional
        Standard deviation of added Gaussian noise, in image units (HU for CT).
    crop_shape : tuple of 2 int or None, optional
        A random crop of this in-plane size (rows, columns); None keeps the plane.

    Examples
    --------
    >>> cfg = AugmentConfig(max_angle_deg=0, crop_shape=(32, 32))
    >>> cfg.flip, cfg.crop_shape
    (True, (32, 32))
    """

    flip: bool = True
    rot90: bool = True
    max_angle_deg: float = 10.0
    brightness: float = 0.1
    contrast: float = 0.1
    gamma: tuple[float, float] = (0.8, 1.25)
    noise_sigma: float = 0.0
    crop_shape: tuple[int, int] | None = None


def draw_params(rng: np.random.Generator, shape: tuple[int, ...],
                cfg: AugmentConfig) -> AugmentParams:
    """Draw one sample's parameters (plain numbers: JSON-serializable).

    Parameters
    ----------
    rng : numpy.random.Generator
        The source of randomness (a seeded ``numpy.random.default_rng`` for reproducibility).
    shape : tuple of int
        Shape of the image; the last two axes are the plane.
    cfg : AugmentConfig
        What may happen.

    Returns
    -------
    AugmentParams
        The parameters, for :func:`apply`.

    Raises
    ------
    ValueError
        ``cfg.crop_shape`` is larger than the image plane.

    Examples
    --------
    >>> p = draw_params(np.random.default_rng(1), (4, 6), AugmentConfig())
    >>> p["rot90"] in (0, 2)  # a 4 x 6 plane only turns by half turns
    True
    """
    p: AugmentParams = {
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
          params: AugmentParams) -> tuple[NDArray[np.float32], NDArray[Any] | None]:
    """Apply one sample's ``params`` to ``image`` (and ``labels``).

    Geometric steps (flips, quarter turns, rotation, crop) act on both, the labels with
    nearest-neighbour; intensity steps (gamma, contrast, brightness, noise) on the image only.

    Parameters
    ----------
    image : array_like
        2D, or 3D with the plane on the last two axes.
    labels : array_like or None
        Labels on the same grid as ``image``, or None.
    params : AugmentParams
        One sample's parameters (from :func:`draw_params` or a dataset's record).

    Returns
    -------
    image : numpy.ndarray of float32
        The augmented image.
    labels : numpy.ndarray or None
        The labels moved with it (their dtype kept), or None.

    Raises
    ------
    ValueError
        ``labels`` has another shape than ``image``.

    Examples
    --------
    An up-down flip and nothing else:

    >>> p = AugmentParams(flip_rows=True, flip_cols=False, rot90=0, angle_deg=0.0,
    ...                   brightness=0.0, contrast=1.0, gamma=1.0, noise_seed=0,
    ...                   noise_sigma=0.0, crop=None)
    >>> img, lab = apply(np.arange(9.0).reshape(3, 3), np.eye(3, dtype=np.uint8), p)
    >>> img
    array([[6., 7., 8.],
           [3., 4., 5.],
           [0., 1., 2.]], dtype=float32)
    >>> lab
    array([[0, 0, 1],
           [0, 1, 0],
           [1, 0, 0]], dtype=uint8)
    """
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
            ) -> list[tuple[NDArray[np.float32], NDArray[Any] | None, AugmentParams]]:
    """Draw ``n`` augmented samples ``(image, labels, params)``: the same seed gives the same
    samples, and ``apply(image, labels, params)`` regenerates any one of them.

    Parameters
    ----------
    image : array_like
        2D, or 3D with the plane on the last two axes.
    labels : array_like, optional
        Labels on the same grid, moved with the image.
    n : int, optional
        Number of samples.
    seed : int, optional
        Seed of ``numpy.random.default_rng``.
    config : AugmentConfig, optional
        What may happen (default ``AugmentConfig()``).

    Returns
    -------
    list of tuple
        ``(image, labels, params)`` per sample: float32 image, labels or None, and the
        :class:`AugmentParams` that made it.

    Examples
    --------
    >>> img = np.arange(64.0).reshape(8, 8)
    >>> a = augment(img, n=3, seed=7, config=AugmentConfig(crop_shape=(4, 4)))
    >>> [s[0].shape for s in a]
    [(4, 4), (4, 4), (4, 4)]
    >>> np.array_equal(a[1][0], apply(img, None, a[1][2])[0])
    True
    """
    cfg = config or AugmentConfig()
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        p = draw_params(rng, np.shape(image), cfg)
        a, b = apply(image, labels, p)
        out.append((a, b, p))
    return out


def config_dict(cfg: AugmentConfig) -> dict[str, Any]:
    """The configuration as a plain dict (for a dataset's JSON record).

    Parameters
    ----------
    cfg : AugmentConfig
        The configuration.

    Returns
    -------
    dict
        Its fields by name.

    Examples
    --------
    >>> config_dict(AugmentConfig(noise_sigma=5.0))["noise_sigma"]
    5.0
    """
    return asdict(cfg)
