"""How far the region maps may move a texel: only as far as the photos give evidence for.

The region maps (stages.texture.regions) learn initial -> references on the observed surface and carry the
correction to the unobserved texels of the same colours. Two limits keep what the photos do not contradict:

- `nearer_photo`: an observed texel that agrees with the photos and is nearer their colour than the mapped one
  keeps it where a grazing view would blend it with the infill;
- `agreeing_beyond`: a texel a photo shows only beyond FidelityConfig.min_cosine (too grazing to take its colour
  from) but with which it agrees is confirmed as it is: it keeps its initial colour (no map, no feathering) where it is nearer the photo's colour than the mapped one;
- `counterpart_weight`: a map is a statement about the colours it learned from; a hidden texel whose initial
  colour has no counterpart among the observed texels' (nearest observed colour further than `radius_de` in Lab)
  keeps its own colour, fading in between (a hidden part of another colour is not repainted by a map learned
  elsewhere: the issue's "a hidden region with no observed counterpart keeps its own colours").
"""

from __future__ import annotations

import numpy as np

from .regions import rgb_to_lab


def nearer_photo(obs, initial: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """[T] bool: observed texels with no disagreement whose initial colour [T, 3] is nearer the photos' than the
    mapped one [T, 3] is (the map has no evidence there: the texel keeps its colour, also where a grazing view
    blends it with the infill)."""
    seen = obs.observed.numpy() & (obs.disagreement.numpy() <= 0)
    photo = obs.colour.numpy()
    return seen & (np.abs(photo - initial).mean(1) <= np.abs(photo - mapped).mean(1))


def agreeing_beyond(obs, wide, initial: np.ndarray, mapped: np.ndarray) -> np.ndarray:
    """[T] bool: texels `obs` does not observe that `wide` (the same photos down to grazing angles) sees with no
    disagreement at all, and whose initial colour [T, 3] is nearer the photos' than the mapped one [T, 3] is."""
    seen = ~obs.observed.numpy() & wide.observed.numpy() & (wide.disagreement.numpy() <= 0)
    photo = wide.colour.numpy()
    return seen & (np.abs(photo - initial).mean(1) <= np.abs(photo - mapped).mean(1))


def counterpart_weight(initial: np.ndarray, observed: np.ndarray, radius_de: float, max_points: int = 50_000,
                       seed: int = 0) -> np.ndarray:
    """[T] in [0, 1]: 1 where an observed texel has (nearly) the texel's initial colour, 0 where the nearest is
    `radius_de` or more away in Lab (observed texels themselves: 1). initial [T, 3] RGB, observed [T] bool."""
    from scipy.spatial import cKDTree

    out = np.ones(len(initial), np.float32)
    if radius_de <= 0 or not observed.any() or observed.all():
        return out if observed.any() else np.zeros(len(initial), np.float32)
    lab = rgb_to_lab(initial)
    obs = np.flatnonzero(observed)
    if len(obs) > max_points:
        obs = np.random.default_rng(seed).choice(obs, max_points, replace=False)
    hid = np.flatnonzero(~observed)
    d = cKDTree(lab[obs]).query(lab[hid], distance_upper_bound=radius_de)[0]
    t = np.clip(1 - d / radius_de, 0, 1)
    out[hid] = t * t * (3 - 2 * t)
    return out
