"""What several test modules share: running the CLI, reading its JSON, edit-distance alignments."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from dnaimg.cli import main


def cli(*args, input=None, debug: bool = False):
    """The CLI in-process.  ``debug``: DNAIMG_DEBUG=1 and exceptions not caught, so that an
    unexpected exception (a bug, which a user sees as "dnaimg: error: unexpected ...") fails the
    test instead of passing as exit 1."""
    if debug:
        return CliRunner(env={"DNAIMG_DEBUG": "1"}).invoke(main, [str(a) for a in args], input=input,
                                                             catch_exceptions=False)
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def cli_json(r) -> dict:
    """The JSON object a successful ``--json`` command printed (after any progress lines)."""
    assert r.exit_code == 0, r.output
    return json.loads(r.output[r.output.index("{"):])


def align_ops(a, b) -> np.ndarray:
    """Per position of oligo ``a``: (substituted, deleted, insertions before it) turning ``a`` into
    read ``b``, by edit distance (the cheapest explanation, a little under the truth); the last
    row holds the insertions after the end.  ``align_ops(a, b).sum(0)``: (subs, dels, ins)."""
    n, m = len(a), len(b)
    D = np.zeros((n + 1, m + 1), int)
    D[:, 0] = np.arange(n + 1)
    D[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            D[i, j] = min(D[i - 1, j - 1] + (a[i - 1] != b[j - 1]), D[i - 1, j] + 1, D[i, j - 1] + 1)
    ops = np.zeros((n + 1, 3), int)
    i, j = n, m
    while i or j:
        if i and j and D[i, j] == D[i - 1, j - 1] + (a[i - 1] != b[j - 1]):
            ops[i - 1, 0] += a[i - 1] != b[j - 1]
            i, j = i - 1, j - 1
        elif i and D[i, j] == D[i - 1, j] + 1:
            ops[i - 1, 1] += 1
            i -= 1
        else:
            ops[i, 2] += 1
            j -= 1
    return ops
