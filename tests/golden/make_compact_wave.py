"""Write the golden file of the shipped wavelet model compact-gray-v3 (run once; never regenerate:
the file must decode forever with that model's weights).

    python tests/golden/make_compact_wave.py
"""
from pathlib import Path

import numpy as np
from make_compact import write_golden
from PIL import Image

HERE = Path(__file__).resolve().parent


def main():
    img = np.asarray(Image.open(HERE / "v2" / "source.png").convert("L"))
    write_golden(HERE / "compact-wave", "gray-source", img, "../v2/source.png (as gray, Pillow 'L')",
                 "compact-gray-v3", 4)


if __name__ == "__main__":
    main()
