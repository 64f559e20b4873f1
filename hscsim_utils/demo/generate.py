"""One entry point for the two DEMO generators.

- ``galsim`` (default, :mod:`hscsim_utils.demo.independent`): an independent
  forward model of the observation (GalSim galaxies and stars, Kolmogorov x
  optics PSF per visit, photons, detector and coadd). Nothing of the
  simulation's rendering path makes its pixels, so realism numbers on it mean
  what they would mean on real data.
- ``ufig`` (:mod:`hscsim_utils.demo.build`): rendered by UFig with the two-Moffat
  PSF family and noise convention the simulation uses. The pipeline's estimates
  can close exactly on it; it tests the plumbing, not the realism.
"""

from __future__ import annotations

from pathlib import Path

from hscsim_utils.errors import InputError

__all__ = ["GENERATORS", "build_tile"]

GENERATORS = ("galsim", "ufig")


def build_tile(
    out_dir: str | Path,
    size: tuple[int, int] = (4200, 4200),
    seed: int = 20240611,
    generator: str = "galsim",
    preset: str = "ud",
    centre: tuple[float, float] | None = None,
    bands: str | tuple[str, ...] = ("i",),
) -> Path:
    """Build a DEMO tile into ``out_dir`` with ``generator``; return its tile.yaml.

    ``preset`` (``ud`` or ``deep``) chooses the depth of the ``galsim`` tile,
    ``bands`` (any of g r i z y, e.g. "grizy") its bands; the ``ufig`` tile has
    the i band only.
    """
    if generator == "galsim":
        from hscsim_utils.demo.independent import build_independent_demo_tile

        return build_independent_demo_tile(
            out_dir, size, seed, centre, preset, bands=bands
        )
    if generator == "ufig":
        from hscsim_utils.demo.build import build_demo_tile

        if preset != "ud":
            raise InputError("preset", "the ufig generator has only the ud preset")
        if tuple(bands) != ("i",):
            raise InputError("bands", "the ufig generator has only the i band")
        return build_demo_tile(out_dir, size, seed, centre=centre)
    raise InputError("generator", f"must be one of {GENERATORS}, got {generator!r}")
