"""The GalSBI/UFig plugin lists shared by the simulation and the demo tile.

The simulation config (``params/galsbi_hsc_config.py``) renders, extracts and
measures; the demo tile (:mod:`hscsim_utils.demo.ufig_config`) only renders. Both
sample and render the same way, so the lists live here once.
"""

#: Galaxies from the GalSBI posterior (GalSBI's sampler, whose outcome a run's
#: simulations share: :mod:`hscsim_utils.population_cache`), Besancon stars
#: spliced with Gaia.
SAMPLE = [
    "ufig.plugins.multi_band_setup",
    "hscsim_utils.population_cache",
    "ufig.plugins.draw_stars_besancon_map",
]

#: One band: background noise from a map, Lanczos-3 resampling (correlated coadd
#: noise), the coadd PSF, photon rendering, ADU conversion, saturation, outputs.
#: ``ufig.plugins.read_in_catalog`` is absent on purpose: it calls ``np.int``,
#: which numpy 2 removed; galaxies are sampled by galsbi instead.
RENDER_BAND = [
    "ufig.plugins.single_band_setup",
    "ufig.plugins.background_noise",
    "ufig.plugins.resample",
    "ufig.plugins.add_psf",
    "ufig.plugins.gamma_interpolation_table",
    "ufig.plugins.render_galaxies_flexion",
    "ufig.plugins.render_stars_photon",
    "ufig.plugins.convert_photons_to_adu",
    "ufig.plugins.saturate_pixels_x",  # HSC bleed trails run along x
    "galsbi.ucat.plugins.write_catalog",
    "ufig.plugins.write_image",
]


def band_loop(plugins: list[str]):
    """``plugins`` run once per band (an ivy ``Loop`` over the filters)."""
    from ivy.loop import Loop
    from ufig.workflow_util import FiltersStopCriteria

    return Loop(list(plugins), stop=FiltersStopCriteria())
