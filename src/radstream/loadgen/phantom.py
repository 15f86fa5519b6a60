"""Synthetic chest X-ray-like images: cheap, deterministic for a seed, plausible to a model."""

from __future__ import annotations

from typing import Final

import cv2
import numpy as np

# Anatomy is drawn on a grid this many times smaller than the output and upscaled: the
# shapes are smooth, so nothing is lost, and drawing costs 1/64 of full resolution.
_DRAW_REDUCTION: Final = 8
# Noise is drawn at half resolution: standard normals are the single most expensive
# part at full size, and film/detector grain at two-pixel scale looks the same.
_NOISE_REDUCTION: Final = 2
_RIBS_PER_SIDE: Final = 10


def synthetic_cxr(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Return a ``height`` x ``width`` uint16 image that resembles a frontal chest X-ray.

    Bright means dense: air outside the body is dark, lungs darker than soft tissue, with
    a heart shadow, spine and curved ribs, plus detector noise. The same generator state
    gives the same image.
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    small_w = max(32, -(-width // _DRAW_REDUCTION))
    small_h = max(32, -(-height // _DRAW_REDUCTION))
    anatomy = _draw_anatomy(small_w, small_h, rng)
    anatomy = cv2.GaussianBlur(anatomy, (0, 0), sigmaX=max(small_w, small_h) / 150)
    image: np.ndarray = cv2.resize(anatomy, (width, height), interpolation=cv2.INTER_LINEAR)

    noise_w = max(1, -(-width // _NOISE_REDUCTION))
    noise_h = max(1, -(-height // _NOISE_REDUCTION))
    noise: np.ndarray = rng.standard_normal((noise_h, noise_w), dtype=np.float32)
    noise = cv2.resize(noise, (width, height), interpolation=cv2.INTER_NEAREST)
    image += noise * np.float32(rng.uniform(0.008, 0.02))

    np.clip(image, 0.0, 1.0, out=image)
    image *= np.float32(65535.0)
    return image.astype(np.uint16)


def _draw_anatomy(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Attenuation in [0, 1] on a small grid; coordinates run -1..1 across the image."""
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    jitter = rng.uniform(-0.05, 0.05, size=8).astype(np.float32)

    def ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
        result: np.ndarray = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0
        return result

    image = np.full((height, width), 0.04, dtype=np.float32)  # air around the patient
    body = ellipse(jitter[0], 0.15, 0.86 + jitter[1], 1.15)
    image[body] = 0.42 + float(jitter[2])
    # Soft tissue thickens towards the abdomen, so the lower body is brighter.
    image += body * np.clip(ys - 0.35, 0.0, None) * np.float32(0.35)

    lung_cy = -0.08 + float(jitter[3])
    lungs = ellipse(-0.36, lung_cy, 0.27, 0.55 + float(jitter[4])) | ellipse(
        0.36, lung_cy, 0.26, 0.53 + float(jitter[4])
    )
    image[lungs] = 0.18 + float(rng.uniform(-0.03, 0.03))
    # Lungs are denser near the hilum (centre) than at the periphery.
    image += lungs * (np.float32(0.08) * np.exp(-(xs**2) / 0.15)).astype(np.float32)

    image += _ribs(xs, ys, lung_cy, rng) * (body & ~ellipse(0.0, 0.8, 0.9, 0.35))
    heart = ellipse(0.12 + float(jitter[5]), 0.28, 0.30 + float(jitter[6]), 0.24)
    image[heart] = np.maximum(image[heart], 0.5 + float(jitter[7]))

    spine = (np.abs(xs) < 0.075) & body
    vertebrae = np.float32(0.05) * (np.cos(ys * np.float32(45.0)) > 0.6)
    image += spine * (np.float32(0.28) + vertebrae)
    return image


def _ribs(xs: np.ndarray, ys: np.ndarray, lung_cy: float, rng: np.random.Generator) -> np.ndarray:
    """Bright bands curving down from the spine, symmetric left and right."""
    ribs = np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    spacing = 0.105 + float(rng.uniform(-0.01, 0.01))
    ax = np.abs(xs)
    for index in range(_RIBS_PER_SIDE):
        top = lung_cy - 0.62 + index * spacing
        curve = top + 0.22 * ax**2 + 0.1 * ax  # ribs slope down and outwards
        band = np.abs(ys - curve) < 0.022
        ribs += band * (ax < 0.72) * np.float32(0.1)
    return ribs
