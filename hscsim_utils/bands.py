"""The HSC broad bands, one list for the whole package.

Hyper Suprime-Cam's broad-band filters g, r, i, z and y (Kawanomoto et al. 2018,
PASJ 70, 66), in the order of wavelength that the HSC-SSP releases list them in.
Tile files name their bands with these letters; colours are differences of
neighbours in this order; ufig seeds each band's noise by its place in the list
of simulated bands, so simulations keep this order too.
"""

from __future__ import annotations

from collections.abc import Sequence

from hscsim_utils.errors import InputError

__all__ = ["HSC_BANDS", "parse_bands"]

HSC_BANDS: tuple[str, ...] = ("g", "r", "i", "z", "y")


def parse_bands(bands: str | Sequence[str], source: str = "bands") -> tuple[str, ...]:
    """HSC band letters (a string such as ``"grizy"`` or ``"g,r,i"``, or a
    sequence) in the order g r i z y, each once; unknown letters or none at all
    are one :class:`InputError` naming ``source``."""
    letters = (
        [c for c in bands if c not in ", "] if isinstance(bands, str) else list(bands)
    )
    unknown = sorted({str(b) for b in letters} - set(HSC_BANDS))
    if unknown:
        raise InputError(source, f"unknown bands {unknown}; HSC bands: "
                         f"{''.join(HSC_BANDS)}, e.g. gri")  # fmt: skip
    if not letters:
        raise InputError(source, f"give at least one of {''.join(HSC_BANDS)}")
    return tuple(b for b in HSC_BANDS if b in letters)
