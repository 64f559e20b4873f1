"""hscsim: simulate an HSC deep coadd patch with GalSBI and UFig."""

__version__ = "0.1.0"
