"""Whole HDF5 datasets compressed with LZF, decoded on the tile's threads.

Stage 01 writes the patch's maps with h5py's LZF filter (filter 32000: each
chunk is one raw LZF stream, Lehmann's liblzf format, without a header; a
chunk that LZF cannot shrink is stored as it is, with bit 0 of its filter mask
set). HDF5 decodes the chunks one after the other in the calling thread, holding
Python's lock: the visit map ``map_pointings`` of a full patch (4200 x 4200
pixels of five 64-bit words, 706 MB decoded from 40 MB) took 2.6-3.4 s on a
2-core machine, and ufig's PSF estimation reads it once per call (four calls in
the i-band chain).

:func:`read_array` reads the stored chunks as they are (one pass, 0.03 s) and
decodes them with a numba kernel that releases the lock, on at most
:func:`hscsim_utils.threads.n_threads` threads, each into a buffer of its own
from which the chunk's rows go to their place in the output array: 1.8-2.0 s
for the visit map, most of it the kernel mapping 706 MB of fresh memory. The
bytes are the ones HDF5 would give: any dataset this path does not handle
(other filters, a filter pipeline with shuffle, a chunk never written, a
dimension other than 2, a stored type that is not the array's, a stream that
does not decode to a whole chunk) is read by h5py as before.

Entry point: :func:`read_array`.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import h5py
import numba as nb
import numpy as np

__all__ = ["LZF_FILTER", "read_array"]

#: HDF5 filter code of h5py's LZF filter.
LZF_FILTER = 32000


def read_array(dataset) -> np.ndarray:
    """``dataset[()]`` of an h5py dataset, LZF chunks decoded in parallel."""
    chunks = _stored_chunks(dataset)
    if chunks is None:
        return dataset[()]
    out = np.empty(dataset.shape, dataset.dtype)
    rows = out.view(np.uint8).reshape(out.shape[0], -1)
    size = out.dtype.itemsize
    cy, cx = dataset.chunks
    scratch = threading.local()  # one chunk buffer per thread: fresh pages are slow

    def place(item) -> bool:
        (y0, x0), (mask, raw) = item
        if not hasattr(scratch, "chunk"):
            scratch.chunk = np.empty(cy * cx * size, np.uint8)
        src = np.frombuffer(raw, np.uint8)
        return _place_chunk(src, bool(mask & 1), scratch.chunk, rows, y0, x0 * size,
                            cy, cx * size)  # fmt: skip

    from hscsim_utils.threads import n_threads

    with ThreadPoolExecutor(max_workers=max(1, min(n_threads(), len(chunks)))) as pool:
        placed = list(pool.map(place, chunks.items()))
    return out if all(placed) else dataset[()]


def _stored_chunks(dataset) -> dict[tuple[int, int], tuple[int, bytes]] | None:
    """Every chunk's filter mask and stored bytes by offset, or None when the
    dataset is not a 2-d one compressed by LZF alone with every chunk written."""
    if dataset.ndim != 2 or dataset.chunks is None or dataset.dtype.hasobject:
        return None
    plist = dataset.id.get_create_plist()
    if plist.get_nfilters() != 1 or plist.get_filter(0)[0] != LZF_FILTER:
        return None
    if dataset.id.get_type() != h5py.h5t.py_create(dataset.dtype):
        return None  # the stored bytes would need HDF5's conversion
    (ny, nx), (cy, cx) = dataset.shape, dataset.chunks
    offsets = [(y, x) for y in range(0, ny, cy) for x in range(0, nx, cx)]
    if dataset.id.get_num_chunks() != len(offsets):
        return None
    return {offset: dataset.id.read_direct_chunk(offset) for offset in offsets}


@nb.njit(nogil=True, cache=True)
def _place_chunk(src, stored_raw, buffer, rows, y0, x0, cy, cx):
    """Decode one stored chunk (``cy`` rows of ``cx`` bytes) into ``buffer`` and
    copy its part inside the array (``rows``: the output as rows of bytes) to
    row ``y0``, byte ``x0``. False when the chunk is not exactly ``cy * cx``
    bytes."""
    if stored_raw:
        if src.size != buffer.size:
            return False
        chunk = src
    else:
        chunk = buffer
        if _lzf_decode(src, chunk) != chunk.size:
            return False
    ny = min(cy, rows.shape[0] - y0)
    nx = min(cx, rows.shape[1] - x0)
    for i in range(ny):
        rows[y0 + i, x0 : x0 + nx] = chunk[i * cx : i * cx + nx]
    return True


@nb.njit(nogil=True, cache=True)
def _lzf_decode(src, dst):
    """liblzf's ``lzf_decompress``: decode ``src`` into ``dst`` (uint8 arrays);
    the bytes written, or -1 for a stream that is corrupt or too long.

    A control byte below 32 starts a run of ``ctrl + 1`` literal bytes; any
    other is a back reference of ``(ctrl >> 5) + 2`` bytes (a length field of 7
    adds the next byte) at distance ``((ctrl & 31) << 8) + next byte + 1``.
    """
    n_in, n_out = src.size, dst.size
    ip = 0
    op = 0
    while ip < n_in:
        ctrl = np.int64(src[ip])
        ip += 1
        if ctrl < 32:
            length = ctrl + 1
            if op + length > n_out or ip + length > n_in:
                return -1
            dst[op : op + length] = src[ip : ip + length]
            op += length
            ip += length
        else:
            length = ctrl >> 5
            ref = op - ((ctrl & 31) << 8) - 1
            if length == 7:
                if ip >= n_in:
                    return -1
                length += np.int64(src[ip])
                ip += 1
            if ip >= n_in:
                return -1
            ref -= np.int64(src[ip])
            ip += 1
            length += 2
            if ref < 0 or op + length > n_out:
                return -1
            for k in range(length):  # byte by byte: the ranges may overlap
                dst[op + k] = dst[ref + k]
            op += length
    return op
