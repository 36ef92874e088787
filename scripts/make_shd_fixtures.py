"""Writes the two small SHD-format fixtures of tests/data/ with h5py and PyTables.

They check that the HDF5 reader reads files as Python writes them: h5py's
variable-length datasets chunked with gzip and shuffle (float16 times, uint8 labels),
and PyTables' VLArray with zlib (float32 times, uint16 labels). Both hold the same six
samples; runtime/src/train/shd.rs's tests know their values.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install h5py tables numpy
    /tmp/venv/bin/python scripts/make_shd_fixtures.py
"""
import h5py
import numpy as np
import tables

TIMES = [
    [0.0, 0.0015, 0.25, 0.5],
    [],
    [0.125, 0.125, 0.75],
    [0.0625],
    [0.375, 1.25],
    [0.5, 0.0039],
]
UNITS = [[3, 699, 699, 10], [], [5, 5, 6], [0], [1, 2], [698, 7]]
LABELS = [0, 1, 2, 19, 4, 5]

with h5py.File("tests/data/shd_h5py_gzip.h5", "w") as f:
    opts = dict(chunks=(2,), compression="gzip", shuffle=True)
    t = f.create_dataset("spikes/times", (6,), dtype=h5py.vlen_dtype(np.float16), **opts)
    u = f.create_dataset("spikes/units", (6,), dtype=h5py.vlen_dtype(np.uint16), **opts)
    for i in range(6):
        t[i] = np.array(TIMES[i], np.float16)
        u[i] = np.array(UNITS[i], np.uint16)
    f.create_dataset("labels", data=np.array(LABELS, np.uint8), **opts)
    f.create_dataset("extra/speaker", data=np.arange(6, dtype=np.uint16))

with tables.open_file("tests/data/shd_pytables.h5", "w", filters=tables.Filters(complevel=9, complib="zlib")) as f:
    g = f.create_group("/", "spikes")
    t = f.create_vlarray(g, "times", tables.Float32Atom(), expectedrows=6)
    u = f.create_vlarray(g, "units", tables.UInt16Atom(), expectedrows=6)
    for i in range(6):
        t.append(np.array(TIMES[i], np.float32))
        u.append(np.array(UNITS[i], np.uint16))
    f.create_array("/", "labels", np.array(LABELS, np.uint16))
