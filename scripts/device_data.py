#!/usr/bin/env python3
"""A training subset that fits a GPU machine's copy of the tree (git-ignored, under .device/).

    python scripts/device_data.py --mb 24 DIR [DIR ...]        # -> .device/data/

Images are drawn at random (seeded) from every DIR (searched recursively) until the size budget
is spent, and copied as they are (numbered, so that no two names collide); SOURCES lists the
folders, and a model card exported from a run on this folder names them.  The device call then
names `.device` in `carry` and trains with `--data .device/data` (see scripts/device_train.sh).
An existing output folder is replaced only if this script made it.
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--mb", type=float, default=24.0, help="size budget in MiB [24]")
    ap.add_argument("--out", type=Path, default=Path(".device/data"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    files = []
    for d in a.dirs:
        if not d.is_dir():
            print(f"device_data: {d} is not a folder", file=sys.stderr)
            return 1
        files += sorted(p for p in d.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        print("device_data: no image files in " + ", ".join(map(str, a.dirs)), file=sys.stderr)
        return 1
    out = a.out.resolve()
    for d in a.dirs:
        d = d.resolve()
        if out == d or d in out.parents or out in d.parents:
            print(f"device_data: --out {a.out} and {d} overlap", file=sys.stderr)
            return 1
    if a.out.exists():
        if not (a.out / "SOURCES").is_file():
            print(f"device_data: {a.out} exists and was not made by this script", file=sys.stderr)
            return 1
        shutil.rmtree(a.out)
    a.out.mkdir(parents=True)
    random.Random(a.seed).shuffle(files)
    budget, used, n = int(a.mb * 1048576), 0, 0
    for p in files:
        size = p.stat().st_size
        if used + size > budget:
            continue
        shutil.copyfile(p, a.out / f"{n:06d}_{p.name}")
        used, n = used + size, n + 1
    (a.out / "SOURCES").write_text("".join(f"{'/'.join(d.resolve().parts[-3:])}\n" for d in a.dirs))
    print(f"{n} of {len(files)} images, {used / 1048576:.1f} MiB, in {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
