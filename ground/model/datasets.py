"""The data sets the bundled models are trained, calibrated and evaluated on (docs/models.md).

Nothing is downloaded: the digits come with scikit-learn (a test extra), the tiles are generated
(scipy). Each is imported only when a set is asked for, so ``import ground.model.datasets`` needs
neither. tools/build_models.py builds the models from these sets; bench/quant.py and the tests
evaluate the committed models on them. The board install (link/, flight/) never needs them.

- digits: scikit-learn's 1797 8x8 digit images, pixel / 16 (0..1) as float32 [N,1,8,8], labels
  int64 [N]; a fixed stratified 80/20 split (1437 training, 360 held out).
- tiles: generated RGB tiles float32 [N,3,128,128] in 0..1 with their cloud cover (0..1); a tile is
  worth keeping (downlinking) when its cover is below 30 %. The fit, calibration and validation sets
  use different seeds (1, 2, 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]

SEED = 0
"""Base seed of every data set (and of the bundled models' weights, tools/build_models.py)."""

DIGITS_TEST_FRACTION = 0.2
DIGITS_CALIB_SAMPLES = 256

TILE_SIZE = 128
"""Tile side (pixels)."""
TILE_KEEP_MAX_CLOUD = 0.3
"""Cloud cover (fraction) below which a tile is worth keeping."""
TILE_FIT_SAMPLES = 384
TILE_FIT_SEED = SEED + 1
TILE_CALIB_SAMPLES = 64
TILE_CALIB_SEED = SEED + 2
TILE_VALIDATION_SAMPLES = 128
TILE_VALIDATION_SEED = SEED + 3


@dataclass(frozen=True)
class DigitsSplit:
    """scikit-learn digits split for training and held-out evaluation; images are [N,1,8,8] in 0..1."""

    x_train: F32
    y_train: npt.NDArray[np.int64]
    x_test: F32
    y_test: npt.NDArray[np.int64]


def digits_split() -> DigitsSplit:
    """The fixed split used to train and evaluate the digits models: stratified 80/20,
    ``train_test_split(random_state=0)``; 1437 training and 360 held-out images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=DIGITS_TEST_FRACTION, random_state=SEED, stratify=y
    )
    return DigitsSplit(x_tr, y_tr, x_te, y_te)


def digits_calibration() -> dict[str, F32]:
    """Calibration set for ``digits-int8``: the first 256 training images, as {"image": array}."""
    return {"image": digits_split().x_train[:DIGITS_CALIB_SAMPLES]}


def synthetic_tiles(count: int, seed: int) -> tuple[F32, F32]:
    """``count`` generated RGB tiles [count,3,128,128] in 0..1 and their cloud fraction (0..1).

    Ground = smooth coloured texture (vegetation/soil/water tones); clouds = bright smooth blobs
    thresholded from low-frequency noise at a per-tile random cover level.
    """
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    tiles = np.empty((count, 3, TILE_SIZE, TILE_SIZE), dtype=np.float32)
    cover = np.empty(count, dtype=np.float32)
    for i in range(count):
        base = rng.uniform(0.1, 0.5, size=3)
        texture = gaussian_filter(rng.standard_normal((TILE_SIZE, TILE_SIZE)), sigma=4.0, mode="wrap")
        texture /= texture.std() + 1e-9
        ground = base[:, None, None] + 0.06 * texture[None] * rng.uniform(0.5, 1.5, size=3)[:, None, None]
        field = gaussian_filter(rng.standard_normal((TILE_SIZE, TILE_SIZE)), sigma=12.0, mode="wrap")
        target = rng.uniform(0.0, 1.0)
        threshold = np.quantile(field, 1.0 - target)
        opacity = np.clip((field - threshold) / (field.std() * 0.5 + 1e-9), 0.0, 1.0)
        cloud = rng.uniform(0.8, 1.0)
        tile = ground * (1.0 - opacity[None]) + cloud * opacity[None]
        tile += rng.normal(0.0, 0.02, size=tile.shape)
        tiles[i] = np.clip(tile, 0.0, 1.0).astype(np.float32)
        cover[i] = float(np.mean(opacity > 0.5))
    return tiles, cover


def tile_fit_set() -> tuple[F32, npt.NDArray[np.bool_]]:
    """The 384 generated tiles (seed 1) ``tile-fp32``'s head is fitted on, and their keep labels."""
    tiles, cover = synthetic_tiles(TILE_FIT_SAMPLES, seed=TILE_FIT_SEED)
    return tiles, cover < TILE_KEEP_MAX_CLOUD


def tile_calibration() -> dict[str, F32]:
    """Calibration set for ``tile-int8``: 64 generated tiles (seed 2), as {"tile": array}."""
    return {"tile": synthetic_tiles(TILE_CALIB_SAMPLES, seed=TILE_CALIB_SEED)[0]}


def tile_validation(count: int = TILE_VALIDATION_SAMPLES) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Generated tiles (seed 3, disjoint from fit and calibration seeds) and their keep labels."""
    tiles, cover = synthetic_tiles(count, seed=TILE_VALIDATION_SEED)
    return tiles, cover < TILE_KEEP_MAX_CLOUD
