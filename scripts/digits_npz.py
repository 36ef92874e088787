#!/usr/bin/env python3
"""Writes runtime/data/digits.npz from scikit-learn's digits.csv.gz (standard library only).

usage: digits_npz.py DIGITS_CSV_GZ OUT_NPZ
The csv has 1797 rows of 64 pixel values (0..16) and the class; the .npz gets
`images` (1797, 8, 8) and `labels` (1797,), both uint8, values unchanged.
"""
import gzip
import sys
import zipfile


def npy(descr, shape, data):
    dims = ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "")
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, dims)
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header += " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + data


def main(src, out):
    rows = [line.strip().split(",") for line in gzip.open(src, "rt") if line.strip()]
    if len(rows) != 1797 or any(len(r) != 65 for r in rows):
        sys.exit(f"{src}: expected 1797 rows of 65 values")
    images = bytes(int(v) for r in rows for v in r[:64])
    labels = bytes(int(r[64]) for r in rows)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images.npy", npy("|u1", (1797, 8, 8), images))
        z.writestr("labels.npy", npy("|u1", (1797,), labels))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
