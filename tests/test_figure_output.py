"""A stage's figure is written once, atomically, and closed."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from hscsim_utils.atomic import TMP_PREFIX  # noqa: E402
from hscsim_utils.figure_output import save_and_show  # noqa: E402


def test_png_written_and_figure_closed(tmp_path):
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [1, 0])
    path = save_and_show(fig, tmp_path / "plots" / "01_x.png", dpi=50)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    assert [p.name for p in path.parent.iterdir()] == ["01_x.png"]
    assert not any(p.name.startswith(TMP_PREFIX) for p in tmp_path.rglob("*"))
