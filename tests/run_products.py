"""Which run-folder products a stage wrote: the check behind each stage's
"writes exactly what it declares" test."""

from __future__ import annotations

from pathlib import Path

from hscsim_utils.runfolder import CACHES, PRODUCTS, RunFolder


def written_products(run: RunFolder, before: set[Path]) -> set[str]:
    """Products with a file not in ``before``; a new file outside every product
    (and every cache folder) fails the test."""
    names = set()
    for path in {p for p in run.root.rglob("*") if p.is_file()} - before:
        rel = path.relative_to(run.root).as_posix()
        if any(rel.startswith(c) for c in CACHES.values()):
            continue
        owners = [n for n, p in PRODUCTS.items()
                  if rel == p or (p.endswith("/") and rel.startswith(p))]  # fmt: skip
        assert owners, f"{rel} is in no product"
        names.update(owners)
    return names
