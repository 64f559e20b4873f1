"""A mend of galsbi 0.3.0's hand-over of a posterior sample to ufig.

``galsbi.GalSBI._run`` receives ONE posterior row (a ``numpy.void``) and, when
the posterior has the PSF columns ``moffat_beta1``/``moffat_beta2``, indexes
``model_parameters["moffat_beta1"][0]``: an ``IndexError`` on a scalar, so that
a model with such columns cannot run at all. :func:`mended_galsbi_class` returns
a ``GalSBI`` whose ``_run`` passes the row on as plain Python values and leaves
the betas out: the PSF model fixes them (config ``psf_beta``,
:data:`hscsim_utils.numerics.psf_model.PSF_BETAS`). The defect is shown on
galsbi's own code by ``tests/test_simulate.py::test_posterior_row_with_psf_betas``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hscsim_utils.compat import check_version

check_version("galsbi", "0.3.0", __name__)

__all__ = ["PSF_BETA_COLUMNS", "mended_galsbi_class"]

#: Posterior columns that GalSBI would turn into ``psf_beta``; the PSF model
#: fixes the betas (config ``psf_beta``), so they are not passed on.
PSF_BETA_COLUMNS = ("moffat_beta1", "moffat_beta2")


def mended_galsbi_class():
    """``galsbi.GalSBI`` with the mended ``_run`` (imports galsbi and ufig)."""
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
