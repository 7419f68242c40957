"""Write the golden files of the shipped one-channel wavelet models (run once each; never
regenerate: a file must decode forever with its model's weights):

- compact-wave/: compact-gray-v3 at quality 4;
- compact-ctx/: compact-gray-v4 (v3 with a context for its coder and two more rate points) at
  quality 8.5, past v3's trained range, so that the file also pins the extended gain rows;
- compact-gray-v5/: compact-gray-v5 (trained with the context; one file holding network,
  context and gains) at quality 3;
- compact-adapt/: compact-gray-v5 at quality 6, where its encoder adapts the context's tables to
  the image (metadata version 2: table shifts at the head of stream 0);
- compact-gray-v6/: compact-gray-v6 (extends compact-gray-v5 with a context for the hyper-latent)
  at quality 6, its tables shifted too;
- compact-gray-v7/: compact-gray-v7 (extends compact-gray-v5 with v6's hyper-latent context and
  8 narrow tables that its coder context reaches, and a wider context) at quality 6.5, its tables
  shifted too (a few values coded with the narrow tables);
- compact-narrow/: compact-gray-v7 at quality 3, where thousands of values are coded with the
  narrow tables (no shifts: metadata version 1);
- compact-gray-v8/: compact-gray-v8 (v7 with a deeper post-filter, 6 layers of 48 channels) at
  quality 5 (no table shifts there): the symbols are v7's, the pixels its post-filter's;
- compact-gray-v9/: compact-gray-v9 (v8 with its post-filter fitted on X-rays only) at quality 5:
  the symbols are v8's, the pixels its own post-filter's;
- compact-gray-v10/: compact-gray-v10 (v9's post-filter fitted on at X-rays' rates) at quality 5,
  written by the encoder that fades the image's edge into the padding;
- compact-short/: compact-gray-v10 at quality 7, written with 8-row packets and the last packet
  cut short (its trailing zero bytes dropped: 9 of its 208 bytes stored);
- compact-gray-v13/: compact-gray-v13 (the wavelet with learned lifting steps at levels 1 and 2,
  its post-filter fitted for them) at quality 5;
- compact-meta3/: compact-gray-v8 at quality 5, written with the 11-byte metadata (version 3:
  sides less one in 2 bytes, the rate row in 1), which puts the header in 5 oligos per copy;
- compact-meta4/: compact-gray-v8 at quality 7, the same with its tables shifted (version 4);
- compact-gain/: compact-gray-v14 at quality 4, with a post-filter gain (metadata version 5: a
  byte at the head of stream 0; 43/32 here);
- compact-gain-shifts/: compact-gray-v14 at quality 7, with a post-filter gain (16/32) and table
  shifts (metadata version 6);
- compact-cross/: compact-gray-v16 (v14's coder with a cross context) at quality 7: the latent's
  positions in strips, values at a block's edge seeing the blocks left and above in their packet
  (metadata version 7: the gain, 20/32);
- compact-cross-shifts/: compact-gray-v16 at quality 8, with table shifts (metadata version 8).

    python tests/golden/make_compact_wave.py wave|ctx|v5|adapt|v6|v7|narrow|v8|v9|v10|short|v13|meta3|meta4|gain|gain-shifts|cross|cross-shifts
"""
import sys
from pathlib import Path

import numpy as np
from make_compact import write_golden
from PIL import Image

HERE = Path(__file__).resolve().parent
FILES = {"wave": ("compact-wave", "compact-gray-v3", 4), "ctx": ("compact-ctx", "compact-gray-v4", 8.5),
         "v5": ("compact-gray-v5", "compact-gray-v5", 3), "adapt": ("compact-adapt", "compact-gray-v5", 6),
         "v6": ("compact-gray-v6", "compact-gray-v6", 6), "v7": ("compact-gray-v7", "compact-gray-v7", 6.5),
         "narrow": ("compact-narrow", "compact-gray-v7", 3), "v8": ("compact-gray-v8", "compact-gray-v8", 5),
         "v9": ("compact-gray-v9", "compact-gray-v9", 5), "v10": ("compact-gray-v10", "compact-gray-v10", 5),
         "short": ("compact-short", "compact-gray-v10", 7), "v13": ("compact-gray-v13", "compact-gray-v13", 5),
         "meta3": ("compact-meta3", "compact-gray-v8", 5), "meta4": ("compact-meta4", "compact-gray-v8", 7),
         "gain": ("compact-gain", "compact-gray-v14", 4), "gain-shifts": ("compact-gain-shifts", "compact-gray-v14", 7),
         "cross": ("compact-cross", "compact-gray-v16", 7), "cross-shifts": ("compact-cross-shifts", "compact-gray-v16", 8)}


def main(which: str):
    folder, model, quality = FILES[which]
    img = np.asarray(Image.open(HERE / "v2" / "source.png").convert("L"))
    write_golden(HERE / folder, "gray-source", img, "../v2/source.png (as gray, Pillow 'L')", model, quality)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "wave")
