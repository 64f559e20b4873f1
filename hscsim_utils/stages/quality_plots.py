"""Figures of stage 07 (notebook ``07_quality``): background pixels, detected
objects and number counts of the simulation and the data; completeness, purity
and photometry of the detections matched to the true objects; n(z) of the
simulation's detections; colours of simulation and data (several bands)."""

from __future__ import annotations

import numpy as np

from hscsim_utils.stages.quality import TRIANGLE_RANGES, number_counts, robust_std
from hscsim_utils.thumbnail import thumbnail


def plot_images(sim_image: np.ndarray, data_image: np.ndarray, label: str):
    """Simulation and data side by side, on the grey scale of the data (its 90%
    interval)."""
    import matplotlib.pyplot as plt
    from astropy.visualization import ImageNormalize, PercentileInterval

    shown = [thumbnail(img) for img in (sim_image, data_image)]
    finite = shown[1].data[np.isfinite(shown[1].data)]
    vmin, vmax = PercentileInterval(90).get_limits(finite)
    norm = ImageNormalize(vmin=vmin, vmax=vmax)
    fig, axes = plt.subplots(1, 2, figsize=(12, 6), constrained_layout=True)
    titles = ("Simulation (GalSBI + UFig)", "Data")
    for ax, img, title in zip(axes, shown, titles, strict=True):
        ax.imshow(img.data, extent=img.extent, origin="lower", cmap="gray", norm=norm)
        ax.set_title(title)
        ax.set_xlabel("x [px]")
    fig.suptitle(f"{label}: simulated versus data image")
    return fig


def plot_background_histograms(sim_bkg: np.ndarray, data_bkg: np.ndarray, label: str):
    """Histograms of the background pixel values of simulation and data."""
    import matplotlib.pyplot as plt

    sigma = robust_std(data_bkg) or robust_std(sim_bkg) or 1.0
    centre = float(np.median(data_bkg)) if len(data_bkg) else 0.0
    bins = np.linspace(centre - 6 * sigma, centre + 6 * sigma, 241)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for values, name in ((data_bkg, "data"), (sim_bkg, "simulation")):
        ax.hist(values, bins=bins, histtype="step", density=True,
                label=f"{name} (robust std {robust_std(values) or 0:.4g})")  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("pixel value [ADU]")
    ax.set_ylabel("density")
    ax.legend()
    ax.set_title(f"{label}\nbackground pixels (segmentation 0, not masked)")
    return fig


def plot_triangles(sim_objects: np.ndarray, data_objects: np.ndarray, label: str):
    """Triangle plot of MAG_AUTO, FLUX_RADIUS, ELLIPTICITY for both catalogues."""
    from trianglechain import TriangleChain

    params = list(TRIANGLE_RANGES)
    tri = TriangleChain(params=params, ranges=TRIANGLE_RANGES, show_legend=True)
    for cat, name, color in ((data_objects, "data", "k"),
                             (sim_objects, "simulation", "C1")):  # fmt: skip
        sel = np.ones(len(cat), bool)
        for col, (lo, hi) in TRIANGLE_RANGES.items():
            sel &= (cat[col] >= lo) & (cat[col] <= hi)
        data = {p: np.asarray(cat[p][sel], float) for p in params}
        tri.contour_cl(data, color=color, label=f"{name} ({sel.sum()} objects)")
    tri.fig.suptitle(f"{label}\ndetected objects, simulation versus data")
    return tri.fig


def plot_number_counts(
    sim_mags: np.ndarray, data_mags: np.ndarray, area: float, label: str
):
    """MAG_AUTO number counts per deg^2 per magnitude."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for mags, name in ((data_mags, "data"), (sim_mags, "simulation")):
        centres, density = number_counts(mags, area)
        ax.step(centres, density, where="mid", label=f"{name} ({len(mags)} objects)")
    ax.set_yscale("log")
    ax.set_xlabel("MAG_AUTO")
    ax.set_ylabel(r"$N$ per deg$^2$ per mag")
    ax.legend()
    ax.set_title(f"{label}\nnumber counts ({area * 3600:.1f} arcmin$^2$ unmasked)")
    return fig


def _centres(diag: dict) -> np.ndarray:
    edges = np.asarray(diag["mag_bins"], float)
    return 0.5 * (edges[1:] + edges[:-1])


def _values(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], float)


def _sides(truth: dict):
    styles = {"simulation": ("C1", "o"), "data": ("k", "s")}
    return [(side, *styles[side]) for side in ("data", "simulation") if side in truth]


def plot_completeness_purity(truth: dict, label: str):
    """Completeness (by true magnitude) and purity (by MAG_AUTO) of simulation
    and data, for ``FLAGS == 0`` and for all detections (stage 07's ``truth``
    block)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    for side, color, marker in _sides(truth):
        diag = truth[side]
        mag = _centres(diag)
        for selection, ls in (("all", "-"), ("flags0", "--")):
            for ax, key in zip(axes, ("completeness", "purity"), strict=True):
                ax.errorbar(
                    mag, _values(diag[selection][key]),
                    yerr=_values(diag[selection][f"{key}_err"]), color=color,
                    ls=ls, marker=marker, ms=3, label=f"{side}, {selection}",
                )  # fmt: skip
    axes[0].set_xlabel("true magnitude")
    axes[0].set_ylabel("completeness")
    axes[1].set_xlabel("MAG_AUTO")
    axes[1].set_ylabel("purity")
    for ax in axes:
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    radius = truth.get("match_radius_px")
    fig.suptitle(f"{label}\ndetections matched to true objects within {radius:g} "
                 f"px, {truth.get('half')} half")  # fmt: skip
    return fig


def plot_mag_offsets(truth: dict, label: str):
    """Median ``MAG_AUTO - mag`` (error bars: standard error of the median;
    band: NMAD) against true magnitude, simulation and data (all detections)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    for side, color, marker in _sides(truth):
        diag = truth[side]["all"]
        mag = _centres(truth[side])
        med = _values(diag["mag_offset_median"])
        nmad = _values(diag["mag_offset_nmad"])
        ax.fill_between(mag, med - nmad, med + nmad, color=color, alpha=0.15)
        err = _values(diag["mag_offset_err"])
        ax.errorbar(mag, med, yerr=err, color=color, marker=marker, ms=3,
                    label=f"{side} (median, NMAD band)")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylim(-0.5, 1.0)
    ax.set_xlabel("true magnitude")
    ax.set_ylabel("MAG_AUTO - true magnitude")
    ax.legend(fontsize=8)
    ax.set_title(f"{label}\nphotometry of matched objects, {truth.get('half')} half")
    return fig


def plot_redshift_distribution(redshifts: dict, label: str):
    """n(z) of the simulation's detected galaxies for each MAG_AUTO limit
    (stage 07's ``redshifts`` block), normalised, with the median and its
    bootstrap error."""
    import matplotlib.pyplot as plt

    edges = np.asarray(redshifts["z_edges"], float)
    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    for i, (limit, row) in enumerate(redshifts["limits"].items()):
        counts = np.asarray(row["counts"], float)
        if not counts.sum():
            continue
        density = counts / counts.sum() / np.diff(edges)
        text = (f"MAG_AUTO < {limit}: {row['n_galaxies']} galaxies, median z "
                f"{row['z_median']:.2f} $\\pm$ {row['z_median_err']:.2f}")  # fmt: skip
        ax.stairs(density, edges, color=f"C{i}", label=text)
        ax.axvline(row["z_median"], color=f"C{i}", ls=":", lw=1)
    ax.set_xlabel("true redshift z (GalSBI)")
    ax.set_ylabel("n(z), normalised")
    ax.set_xlim(0, 4)
    ax.legend(fontsize=8)
    ax.set_title(f"SIMULATION of {label}\nredshifts of the detected galaxies\n"
                 f"({redshifts['magnitude']}; {redshifts['selection']})",
                 fontsize=10)  # fmt: skip
    return fig


def plot_colours(comparison, label: str):
    """Per colour (columns): its distribution in simulation and data (top) and
    the colour-magnitude diagram of the data with the median colour per 0.5 mag
    of both (bottom), on the scoring half; the panel titles give the KS
    distance and median shift with their floors (``colours`` block of stage
    07, a :class:`~hscsim_utils.stages.quality_colours.ColourComparison`)."""
    import matplotlib.pyplot as plt

    sim, sim_mag = comparison.scoring("simulation")
    data, data_mag = comparison.scoring("data")
    stats = comparison.block["statistics"]
    names = list(data)
    fig, axes = plt.subplots(2, len(names), figsize=(4.2 * len(names), 7.5),
                             squeeze=False, constrained_layout=True)  # fmt: skip
    bins = np.linspace(-1.5, 3.0, 91)
    for col, name in enumerate(names):
        top, bottom = axes[0, col], axes[1, col]
        for values, side, colour in ((data[name], "data", "k"),
                                     (sim[name], "simulation", "C1")):  # fmt: skip
            top.hist(values, bins=bins, histtype="step", density=True, color=colour,
                     label=f"{side} ({values.size})")  # fmt: skip
        ks, shift = stats[f"{name}_ks"], stats[f"{name}_median_shift"]
        top.set_title(f"{name}: KS {_fmt(ks['value'])} (floor {_fmt(ks['floor'])})\n"
                      f"median shift {_fmt(shift['value'], '+.3f')} "
                      f"(floor {_fmt(shift['floor'])})", fontsize=9)  # fmt: skip
        top.set_xlabel(f"{name} [mag]")
        top.legend(fontsize=8)
        bottom.scatter(data_mag, data[name], s=1, c="0.6", rasterized=True,
                       label="data objects")  # fmt: skip
        detail = shift["detail"]
        centres = np.asarray(detail["mag_bins"][:-1]) + 0.25
        for key, side, colour in (("median_b", "data", "k"),
                                  ("median_a", "simulation", "C1")):  # fmt: skip
            med = np.array([np.nan if v is None else v for v in detail[key]])
            bottom.plot(centres, med, color=colour, marker="o", ms=3,
                        label=f"{side} median")  # fmt: skip
        bottom.set_ylim(-1.0, 2.5)
        bottom.set_xlabel(comparison.block["magnitude"])
        bottom.set_ylabel(f"{name} [mag]")
        bottom.legend(fontsize=8, markerscale=4)
    block = comparison.block
    fig.suptitle(f"SIMULATION versus {block['data']} data, colours\n{label}\n"
                 f"({block['selection']}; scoring half)", fontsize=10)  # fmt: skip
    return fig


def _fmt(value, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)
