"""Mends of defects in the packages hscsim drives: ufig, galsbi, PyCosmo, cosmo_torrent.

Each module here mends one package at the version it was written for, and checks
that version on import with :func:`check_version`: any other installed version
gives one :class:`CompatibilityWarning` naming the package, the expected and the
installed version. The mend may then be unneeded or wrong; its test under
``tests/`` (which shows the defect on the package's own code) says which.

- :mod:`~hscsim_utils.compat.ufig_psf`: ufig's PSF estimation (four defects);
- :mod:`~hscsim_utils.compat.ufig_render`: ufig's threaded photon rendering;
- :mod:`~hscsim_utils.compat.ufig_gaia`: ufig's positions of Gaia stars;
- :mod:`~hscsim_utils.compat.ufig_counts`: ufig's ``gain_map`` photon counts;
- :mod:`~hscsim_utils.compat.ufig_flag_masks`: ufig's pixel masks of the stamp
  flags, by bit operations (same numbers, faster);
- :mod:`~hscsim_utils.compat.ufig_checkimages`: ufig's check images at a cheaper
  compression (same arrays, faster);
- :mod:`~hscsim_utils.compat.ufig_numba`: ufig's numba functions, compiled in
  every process;
- :mod:`~hscsim_utils.compat.galsbi`: galsbi's hand-over of a posterior sample;
- :mod:`~hscsim_utils.compat.cosmo_torrent`: cosmo_torrent's downloads without
  a timeout;
- :mod:`~hscsim_utils.compat.pycosmo`: PyCosmo's compilation on first use
  (sympy2c).
"""

from __future__ import annotations

import warnings

# TensorFlow's import can drop the ``metadata`` attribute of ``importlib``: keep
# the function itself.
from importlib.metadata import PackageNotFoundError, version

__all__ = ["CompatibilityWarning", "check_version"]


class CompatibilityWarning(UserWarning):
    """A mended package is installed at another version than its mend was
    written for."""


def check_version(package: str, expected: str, mend: str) -> bool:
    """Whether ``package`` is installed at version ``expected``; if not, warn once
    with a :class:`CompatibilityWarning` naming the package, both versions and
    ``mend`` (the module that mends it)."""
    try:
        installed = version(package)
    except PackageNotFoundError:
        installed = "none"
    if installed == expected:
        return True
    warnings.warn(
        f"{mend} mends {package} {expected}, but {package} {installed} is "
        f"installed: check that the mend is still needed and still right "
        f"(its test shows the defect on {package}'s own code)",
        CompatibilityWarning,
        stacklevel=2,
    )
    return False
