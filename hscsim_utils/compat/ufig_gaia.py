"""A mend of ufig 1.2.1's positions of Gaia stars.

ufig's pixel convention puts pixel corners on integers: ``coordinate_util.radec2xy``
takes the FITS (origin 1) position and subtracts 0.5. The Besancon-Gaia splice
(``plugins/draw_stars_besancon_map.py``, ``get_star_cat_besancon_gaia_splice``)
converts the Gaia positions with ``wcs.all_world2pix(ra, dec, 0)`` instead, with
pixel centres on integers: every Gaia star is drawn half a pixel left of and
below its true position. :func:`shift_gaia_for_ufig` moves the stars of a Gaia
table by (+0.5, +0.5) pixels through the image's WCS, so that ufig draws them in
place while the image header's WCS (the data's) stays right for everything else.
The defect is shown on ufig's own code by ``tests/test_ufig_gaia_fixes.py``.
"""

from __future__ import annotations

import numpy as np

from hscsim_utils.compat import check_version

check_version("ufig", "1.2.1", __name__)

__all__ = ["shift_gaia_for_ufig"]


def shift_gaia_for_ufig(gaia: np.ndarray, wcs) -> np.ndarray:
    """Copy of the Gaia table ``gaia`` (fields ``ra``, ``dec`` in degrees) with
    every star moved by +0.5 pixel in x and y through ``wcs`` (astropy WCS of the
    image ufig renders)."""
    x, y = wcs.all_world2pix(gaia["ra"], gaia["dec"], 0)
    out = gaia.copy()
    out["ra"], out["dec"] = wcs.all_pix2world(x + 0.5, y + 0.5, 0)
    return out
