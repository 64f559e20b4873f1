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
# # 02 Mask and overlap files
#
# *Runtime on 2 cores: about 3 s on the full 4200 x 4200 DEMO (each band).*
#
# ufig flags sources with a pixel mask in binary flag format: bit 0 (value 1)
# delta weight (unused for HSC), bit 1 (value 2) bright star, bit 2 (value 4)
# survey mask; a pixel with value 6 carries both star and survey flags. We take the
# bright-star mask (`BRIGHT_OBJECT`) and the survey mask (`NO_DATA`) from the
# calexp's MASK plane, whose bit numbers are read from the `MP_*` header keywords.
#
# The overlap file marks pixels that a neighbouring tile also covers, so that
# objects are not counted twice; for a single tile it is all False.

# %% tags=["parameters"]
tile_file = ""  # tile YAML; empty: the demo tile
run_dir = ""  # run folder; empty: the demo run folder
star_planes = "BRIGHT_OBJECT"  # comma-separated MASK planes -> ufig star flag
survey_planes = "NO_DATA"  # comma-separated MASK planes -> ufig survey flag

# %%
import numpy as np

from hscsim_utils.figure_output import save_and_show
from hscsim_utils.hsc.tile import resolve_tile
from hscsim_utils.runfolder import resolve_run
from hscsim_utils.stages import masks, masks_plots

tile = resolve_tile(tile_file)
run = resolve_run(run_dir)
print(tile.label)

# %%
params = masks.Params(star_planes=star_planes, survey_planes=survey_planes)
result = masks.run(tile, run, params)
for value, name in [(2, "bright star"), (4, "survey mask")]:
    share = np.mean((result.mask & value) > 0)
    print(f"{name:>12s}: {100 * share:.2f} % of the pixels")
print(f"written: {run.mask}, {run.overlap}")

# %%
fig = masks_plots.plot_mask(result.image, result.mask, tile.label)
save_and_show(fig, run.plot("02_mask.png"), dpi=120)
