# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (hscsim)
#     language: python
#     name: hscsim
# ---

# %% [markdown]
# # 04 Stars
#
# *Runtime on 2 cores: about 5 s on the full 4200 x 4200 DEMO.*
#
# Stars are simulated with two ingredients:
#
# - the Besançon model of the Milky Way gives a synthetic star catalogue with
#   realistic number counts and colours;
# - the brightest simulated stars are placed at the positions of real Gaia DR3
#   stars, so that they fall where the real image (and its bright-star mask) has
#   them. ufig does this matching while rendering (`besancon_gaia_splice`).
#
# Outputs in the run folder: `stars/besancon.h5` and `stars/gaia.h5`, in the
# layouts ufig's `draw_stars_besancon_map` reads.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty: the demo tile
run_dir = ""  # run folder; empty: the demo run folder
area_store = 2.0  # deg^2 of stars stored per HEALPix pixel (tutorial: 2)
gaia_source = ""  # auto, vizier or local; empty: local for the demo, else auto
gaia_table = ""  # local Gaia table; empty: the gaia_table of the tile file
gaia_timeout = 10.0  # seconds before VizieR counts as unreachable

# %%
from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import stars, stars_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)

# %%
params = stars.Params(
    area_store=area_store,
    gaia_source=gaia_source,
    gaia_table=gaia_table,
    gaia_timeout=gaia_timeout,
)
result = stars.run(tile, run, params)
calexp = result.calexp

# %% [markdown]
# ## Besançon model
#
# The model is run with the web service (http://model2016.obs-besancon.fr) once
# per HEALPix pixel (nside 8) that the simulation of this patch reads (the
# tutorial requests the centre pixel and its eight neighbours; a patch needs one
# or two of them), at the pixel centre's galactic coordinates: SDSS+JHK filters,
# FITS output, distances up to 50 kpc, solid angle 5 deg², reference band r down
# to 30 mag, colours `r-g`, `r-i`, `r-z`, `r-u` from -10 to 99, no photometric
# errors. These are the lines of sight to request (`hscsim archive` lists them
# before anything is downloaded):

# %%
for row in result.besancon["requested"]:
    print(f"pixel {row['pixel']:4d}: l = {row['l']:8.3f}, b = {row['b']:8.3f}")

# %% [markdown]
# Each output (a header text plus a FITS table) is read back: the header gives the
# line of sight (hence the HEALPix pixel, RING order as ufig looks it up) and the
# solid angle. The magnitudes are `g = r - (r-g)` and likewise for i and z; the
# SDSS filters have no y band, so y is set to z, the closest one. To keep the file
# small, only `area_store / solid angle` of the stars are kept (a seeded random
# subsample); ufig rescales the counts with the stored `simulation_area`. Every
# pixel the tile touches must have a catalogue (if one is missing, the stage stops
# with the lines of sight to request).

# %%
besancon = result.besancon
for pix, n in besancon["n_stars"].items():
    print(f"pixel {pix:4d}: {n} stars stored for {params.area_store} deg^2")
print(f"tile reads pixels {besancon['required']}; written: {run.besancon}")

# %% [markdown]
# ## Gaia DR3
#
# Gaia stars (`Source`, `RAJ2000`, `DEJ2000`, `Gmag` of VizieR's `I/355/gaiadr3`)
# within one patch diagonal of the centre come from VizieR when it answers, else
# from the local table of the tile file. The demo tile's sky is simulated, so it
# uses the Gaia table it ships with. Rows with missing values are removed and
# stars outside the patch (plus a 50-pixel margin) dropped.

# %%
gaia = result.gaia
print(f"{len(gaia)} Gaia stars written: {run.gaia}")

# %% [markdown]
# ## Star counts
#
# Besançon counts per deg² (in Gaia G, via ufig's colour transformation, and in i)
# against the Gaia stars in the patch. They should agree where Gaia is complete
# (G < 20) and Gaia should drop off beyond.

# %%
in_image = gaia[stars.in_patch(gaia, calexp.wcs, calexp.shape, margin=0)]
fig = stars_plots.plot_star_counts(
    stars.read_besancon_map(run.besancon),
    in_image,
    stars.patch_area(calexp),
    besancon["centre_pixel"],
    tile.label,
)
save_and_show(fig, run.plot("04_star_counts.png"), dpi=120)

# %% [markdown]
# ## Gaia stars on the image

# %%
fig = stars_plots.plot_gaia_on_image(calexp.image, calexp.wcs, gaia, tile.label)
save_and_show(fig, run.plot("04_gaia_on_image.png"), dpi=120)
