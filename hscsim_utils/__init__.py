"""hscsim: simulate an HSC deep coadd patch with GalSBI and UFig."""

from hscsim_utils.interpreter import put_interpreter_first_on_path

__version__ = "0.1.0"

# Tools started by hscsim run ``python`` from PATH (see interpreter.py).
put_interpreter_first_on_path()
