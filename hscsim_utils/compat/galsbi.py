"""Mends of galsbi 0.3.0: its import of PyTorch and its hand-over of a
posterior sample to ufig.

Import: ``galsbi/__init__.py`` runs ``import torch`` for every user, though
only the SPS models (``galsbi.ucat_sps``, which import torch themselves) use it:
1.2 s of the 1.8 s that ``import galsbi`` takes and ~190 MB per process
(measured on 2 cores, torch 2.13 CPU: ``galsbi.ucat.config.common`` 2.2 s and
303 MB peak with it, 0.6 s and 111 MB without). :func:`import_galsbi` imports
galsbi with an empty stand-in bound to that one name, so the Moser+24 and
Fischbacher+24 models run without PyTorch; an SPS model still imports it where
it is used. Shown on galsbi's own import by
``tests/test_simulate.py::test_galsbi_imports_torch_unless_mended``.

Posterior sample: ``galsbi.GalSBI._run`` receives ONE posterior row (a
``numpy.void``) and, when
the posterior has the PSF columns ``moffat_beta1``/``moffat_beta2``, indexes
``model_parameters["moffat_beta1"][0]``: an ``IndexError`` on a scalar, so that
a model with such columns cannot run at all. :func:`mended_galsbi_class` returns
a ``GalSBI`` whose ``_run`` passes the row on as plain Python values and leaves
the betas out: the PSF model fixes them (config ``psf_beta``,
:data:`hscsim_utils.numerics.psf_model.PSF_BETAS`). The defect is shown on
galsbi's own code by ``tests/test_simulate.py::test_posterior_row_with_psf_betas``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

from hscsim_utils.compat import check_version

check_version("galsbi", "0.3.0", __name__)

__all__ = ["PSF_BETA_COLUMNS", "import_galsbi", "mended_galsbi_class"]

#: Posterior columns that GalSBI would turn into ``psf_beta``; the PSF model
#: fixes the betas (config ``psf_beta``), so they are not passed on.
PSF_BETA_COLUMNS = ("moffat_beta1", "moffat_beta2")


def import_galsbi() -> types.ModuleType:
    """The ``galsbi`` package, imported without PyTorch when not imported yet
    (and torch is not either): its ``import torch`` binds an empty stand-in,
    which leaves ``sys.modules`` right after, so a later ``import torch``
    anywhere loads the real one."""
    if "galsbi" in sys.modules or "torch" in sys.modules:
        import galsbi

        return galsbi
    stand_in = types.ModuleType("torch", "stand-in: galsbi imports torch unused")
    sys.modules["torch"] = stand_in
    try:
        import galsbi
    finally:
        if sys.modules.get("torch") is stand_in:
            del sys.modules["torch"]
    return galsbi


def mended_galsbi_class():
    """``galsbi.GalSBI`` with the mended ``_run`` (imports galsbi and ufig)."""
    import_galsbi()
    from galsbi import GalSBI
    from ufig import run_util

    class HscGalSBI(GalSBI):
        """GalSBI that passes a posterior sample on as plain keyword arguments."""

        def _run(self, config, model_parameters, **kwargs):
            params = {
                col: _plain(model_parameters[col])
                for col in model_parameters.dtype.names
                if col not in PSF_BETA_COLUMNS
            }
            params.update(kwargs)
            self.filters = list(params["filters"])
            run_util.run_ufig_from_config(config, **params)  # context not kept

    return HscGalSBI


def _plain(value: Any) -> Any:
    arr = np.asarray(value)
    return arr.item() if arr.ndim == 0 else arr
