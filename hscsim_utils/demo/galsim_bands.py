"""The five HSC bands of the independent DEMO tile (simulated): what differs per band.

The GalSim DEMO (:mod:`hscsim_utils.demo.independent`) observes one sky in any
of the bands g r i z y. What is per band in HSC is per band here; everything
else (galaxies, stars, camera, pointing, BRIGHT_OBJECT masks) is shared.

- Filters: the calexp ``FILTER`` of HSC PDR3 UltraDeep, HSC-G, HSC-R2, HSC-I2,
  HSC-Z, HSC-Y (the UD layer was observed with the second r and i filters,
  Aihara et al. 2022, PASJ 74, 247); file names say HSC-G ... HSC-Y as the
  i band's always did (``calexp-HSC-I-...``).
- Observing time (Aihara et al. 2018a, PASJ 70, S4, the HSC-SSP design):
  UltraDeep g 420, r 420, i 840, z 1134, y 1008 min (5-sigma point-source depth
  g 28.1, r 27.7, i 27.4, z 26.8, y 26.3); Deep g 84, r 84, i 126, z 210, y 126
  min (depths 27.5, 27.1, 26.8, 26.3, 25.3). PDR3 delivered ~80% of it (Aihara
  et al. 2022). The i band of each preset keeps its number of visits of 270 s
  (UD 240, chosen to match the exposure map of the real UD-COSMOS patch; Deep
  22); the other bands get that number times their design time over the i
  band's: UD g 120, r 120, z 324 -> 320, y 288; Deep g 15, r 15, z 37, y 22.
  320 is the most visits the coverage bitmaps hold (5 words of 64 bits, also
  ufig's limit), so the UD z band has 1.2% less time than the proportion.
- Visit noise: the single-visit background rms of a band is that of its UD
  design, 5 sigma in a 2" aperture at the design depth after the design time
  (:func:`hscsim_utils.demo.observation.single_visit_sigma`): g 0.0665, r 0.0961,
  i 0.1792, z 0.3618, y 0.5406 coadd ADU (zero point 27) per 270 s visit, in
  both presets (a visit's noise does not depend on the layer; the i band's is
  the one the i-band tile always had). The sky level follows from it and the
  zero point, as for the i band
  (:func:`hscsim_utils.demo.galsim_observation.draw_visit_photometry`): g 21.1,
  r 20.3, i 19.3, z 18.7, y 18.2 mag/arcsec^2, ~1 mag (y 0.4 mag) brighter than
  a dark Maunakea sky (g 22.0, r 21.2, i 20.4, z 19.6, y 18.6: typical
  new-moon zenith values, approximate and not from one publication), presumably
  the margin the design depths keep for moon, seeing and weather; the sky
  colours are the dark sky's within ~0.2 mag but for z - y (0.5 instead of
  1.0). The dark-sky values are a check only: taking them for the sky would
  change the i band's noise, which matches the real UD-COSMOS patch.
- Zero points: ZP_e, the magnitude giving 1 e-/s, is 28.5 in i2 (NAOJ HSC
  filters and sensitivities page); the other bands scale it by the photon
  count of an AB source, int T(lambda) dlambda / lambda, of the HSC total
  throughput curves shipped with galsbi (``HSC_filters_collection_yfix.h5``):
  g 28.80, r 28.87, z 27.60, y 27.21 (the same integral with the 8.2 m pupil
  and its 0.2 obscuration gives 28.55 for i2).
- Extinction per airmass at Maunakea, approximate: Rayleigh scattering at
  616 hPa plus ozone and aerosols at each band's effective wavelength (481,
  623, 775, 891, 978 nm from the same curves), the shape of the mean Maunakea
  curve of Buton et al. 2013 (A&A 549, A8) that the i band's 0.05 cites:
  g 0.14, r 0.09, i 0.05, z 0.03, y 0.03 mag.
- Seeing: median PSF FWHM of PDR3 per band (Aihara et al. 2022): g 0.77",
  r 0.76", i 0.58-0.61" (the i band keeps its preset's 0.60", Deep 0.62"),
  z 0.68", y 0.68", the median of the atmospheric FWHM of the visits (sigma(ln)
  of the preset). The optics (Zernike terms, diffraction) stay those of the
  i band, 770 nm, in every band: they add ~0.2" in quadrature.
- Per band too: the visit plan (its own seed, so its own dithers, rotator
  angles and coverage; visit numbers of their own range), hour angles, PSFs,
  photometry and noise seed. The amplifier gains are the camera's: the i
  band's plan draws them and every band uses them. Saturation, bleed trails
  and bright-star wings follow from each band's magnitudes, zero point, sky
  and visits.
"""

from __future__ import annotations

from dataclasses import dataclass

from hscsim_utils.bands import HSC_BANDS
from hscsim_utils.demo import galsim_observation as gobs
from hscsim_utils.demo import galsim_psf as gpsf
from hscsim_utils.demo import observation as obs

__all__ = [
    "BandObservation", "DARK_SKY_MAG_ARCSEC2", "DEEP_DESIGN_MIN",
    "EXTINCTION_PER_AIRMASS", "FILTER_NAMES", "MAX_VISITS", "SEEING_MEDIAN_ARCSEC",
    "UD_DESIGN_DEPTH", "UD_DESIGN_MIN", "ZP_ELECTRONS", "band_observation",
    "visit_sigma",
]  # fmt: skip

FILTER_NAMES = {"g": "HSC-G", "r": "HSC-R2", "i": "HSC-I2", "z": "HSC-Z", "y": "HSC-Y"}
UD_DESIGN_MIN = {"g": 420.0, "r": 420.0, "i": 840.0, "z": 1134.0, "y": 1008.0}
UD_DESIGN_DEPTH = {"g": 28.1, "r": 27.7, "i": 27.4, "z": 26.8, "y": 26.3}
DEEP_DESIGN_MIN = {"g": 84.0, "r": 84.0, "i": 126.0, "z": 210.0, "y": 126.0}
ZP_ELECTRONS = {"g": 28.80, "r": 28.87, "i": gobs.ZP_ELECTRONS, "z": 27.60, "y": 27.21}
EXTINCTION_PER_AIRMASS = {
    "g": 0.14, "r": 0.09, "i": gobs.EXTINCTION_PER_AIRMASS, "z": 0.03, "y": 0.03,
}  # fmt: skip
SEEING_MEDIAN_ARCSEC = {"g": 0.77, "r": 0.76, "z": 0.68, "y": 0.68}
#: A dark Maunakea sky (approximate): the check of the skies the noise implies.
DARK_SKY_MAG_ARCSEC2 = {"g": 22.0, "r": 21.2, "i": 20.4, "z": 19.6, "y": 18.6}
MAX_VISITS = 64 * obs.N_BIT_WORDS
#: Offsets of the other bands' visit-plan seeds from the i band's, and of their
#: visit numbers (the i band's start at 7288; HSC numbers visits across bands).
SEED_STEP = 1000
VISIT_STEP = 100_000


def visit_sigma(band: str) -> float:
    """Single-visit background rms (coadd ADU, zero point 27) of the UD design."""
    n_design = UD_DESIGN_MIN[band] * 60.0 / obs.EXPTIME_S
    return obs.single_visit_sigma(UD_DESIGN_DEPTH[band], n_design)


@dataclass(frozen=True)
class BandObservation:
    """How one band of a preset is observed."""

    band: str
    filter_name: str
    n_visits: int
    seeing: gpsf.SeeingModel
    observation_seed: int
    first_visit: int
    sky_sigma: float  # single-visit background rms, coadd ADU
    zp_electrons: float
    extinction: float


def band_observation(
    band: str,
    n_visits_i: int,
    seeing_i: gpsf.SeeingModel,
    seed_i: int,
    design_min: dict[str, float],
) -> BandObservation:
    """The observation of ``band`` in a preset whose i band has ``n_visits_i``
    visits, ``seeing_i`` and visit-plan seed ``seed_i``; the visits scale with
    the layer's ``design_min`` (capped at :data:`MAX_VISITS`)."""
    k = HSC_BANDS.index(band) + 1
    if band == "i":
        n_visits, seeing, seed, first = n_visits_i, seeing_i, seed_i, obs.FIRST_VISIT
    else:
        n_visits = round(n_visits_i * design_min[band] / design_min["i"])
        seeing = gpsf.SeeingModel(SEEING_MEDIAN_ARCSEC[band], seeing_i.sigma_ln)
        seed, first = seed_i + SEED_STEP * k, obs.FIRST_VISIT + VISIT_STEP * k
    return BandObservation(
        band, FILTER_NAMES[band], min(n_visits, MAX_VISITS), seeing, seed, first,
        visit_sigma(band), ZP_ELECTRONS[band], EXTINCTION_PER_AIRMASS[band],
    )  # fmt: skip
