"""A stage's figure: written once beside the executed notebook and shown from that file.

Every notebook cell that makes a figure used to call ``fig.savefig(...)`` and
then ``plt.show()``: matplotlib drew the figure twice, once for the PNG file and
once more for the notebook's inline image (0.3-1 s each for the larger figures,
27 figures in the chain). :func:`save_and_show` draws it once: it writes the PNG
atomically (a temporary name, then a rename: a killed stage leaves no half
image), shows that very file in the notebook (in IPython; elsewhere it only
writes) and closes the figure, so that figures do not pile up in memory.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from matplotlib.figure import Figure

from hscsim_utils.atomic import atomic_path

__all__ = ["DPI", "save_and_show"]

#: Resolution of the stages' PNG files.
DPI = 120


def save_and_show(fig: Figure, path: str | os.PathLike, dpi: int = DPI) -> Path:
    """Write ``fig`` to ``path`` (PNG), show the file in a notebook, close ``fig``."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    if "IPython" in sys.modules:
        from IPython import get_ipython
        from IPython.display import Image, display

        if get_ipython() is not None:
            display(Image(filename=str(path)))
    return path
