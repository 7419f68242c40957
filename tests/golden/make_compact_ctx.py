"""Write the golden file of the shipped context model compact-gray-v4 (compact-gray-v3 with a
context for its coder and two more rate points; run once, never regenerate: the file must decode
forever with those weights).  Quality 8.5 is past v3's trained range: the file also pins the
extended gain rows.

    python tests/golden/make_compact_ctx.py
"""
from pathlib import Path

import numpy as np
from make_compact import write_golden
from PIL import Image

HERE = Path(__file__).resolve().parent


def main():
    img = np.asarray(Image.open(HERE / "v2" / "source.png").convert("L"))
    write_golden(HERE / "compact-ctx", "gray-source", img, "../v2/source.png (as gray, Pillow 'L')",
                 "compact-gray-v4", 8.5)


if __name__ == "__main__":
    main()
