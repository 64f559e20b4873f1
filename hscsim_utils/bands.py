"""The HSC broad bands, one list for the whole package.

Hyper Suprime-Cam's broad-band filters g, r, i, z and y (Kawanomoto et al. 2018,
PASJ 70, 66), in the order of wavelength that the HSC-SSP releases list them in.
Tile files name their bands with these letters; colours are differences of
neighbours in this order; ufig seeds each band's noise by its place in the list
of simulated bands, so simulations keep this order too.
"""

from __future__ import annotations

__all__ = ["HSC_BANDS"]

HSC_BANDS: tuple[str, ...] = ("g", "r", "i", "z", "y")
