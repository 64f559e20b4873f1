"""ufig's numba functions compiled once per machine, not once per process (ufig 1.2.1).

ufig declares its compiled functions (photon rendering of galaxies and stars,
the Lanczos resampling, the pixel integrals, the mask and sysmaps helpers) with
``numba.jit`` but without ``cache=True``, so every process compiles them again
on its first simulation. On the full 4200 x 4200 DEMO patch (2 cores) the first
simulation of a process took 118 s and the second, in the same process, 84 s:
numba recorded 101 compilations in the first and none in the second (resampling
11.5 s against 2.3 s, galaxies 32 s against 23 s, stars 37 s against 26 s).
The chain simulates in three processes (stages 06, 08, 09), so it paid this
about three times.

:func:`cache_compiled_functions` switches numba's on-disk cache on for every
such function of the modules in :data:`MODULES` before its first call: the
first process writes the machine code (to the module's ``__pycache__``, or to
numba's user-wide cache where that is read-only) and later processes load it;
where no cache folder is writable, it warns once and ufig compiles as before.
The code is the same as a fresh compilation on the same machine, so results do
not change; numba checks the source file and the argument types on every load
and compiles again when either changed.
"""

from __future__ import annotations

import importlib
import warnings

from hscsim_utils.compat import check_version

check_version("ufig", "1.2.1", __name__)

__all__ = ["MODULES", "cache_compiled_functions"]

#: ufig modules whose numba functions a simulation compiles (the PSF
#: estimation's are left out: importing ``ufig.psf_estimation`` imports
#: TensorFlow, see :mod:`hscsim_utils.compat.ufig_psf`).
MODULES = (
    "ufig.rendering_util",
    "ufig.mask_utils",
    "ufig.sysmaps_util",
    "ufig.plugins.add_psf",
    "ufig.plugins.resample",
    "ufig.plugins.render_galaxies_flexion",
    "ufig.plugins.render_stars_photon",
)


def cache_compiled_functions(modules: tuple[str, ...] = MODULES) -> int:
    """Turn numba's disk cache on for the not yet compiled functions of
    ``modules``; return how many were switched."""
    from numba.core.dispatcher import Dispatcher

    from hscsim_utils.compat.ufig_psf import import_psf_estimation

    import_psf_estimation()  # before ufig.plugins.add_psf: without TensorFlow
    switched = 0
    for name in modules:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if not isinstance(obj, Dispatcher) or obj.signatures:
                continue
            try:
                obj.enable_caching()
            except RuntimeError as err:  # no writable cache folder: compile as before
                warnings.warn(f"numba cache off for ufig: {err}", stacklevel=2)
                return switched
            switched += 1
    return switched
