"""Simulation of the DNA channel: synthesis, PCR and sequencing.

Each oligo gets a number of physical copies drawn from a lognormal law (``sigma``; synthesis
and PCR bias) and may drop out entirely (``dropout``).  Reads are drawn from the pool in
proportion to the copies, at a mean ``coverage`` reads per oligo (or exactly ``coverage`` per
oligo with ``exact_coverage``, the seed paper's one-read-per-oligo setting).  Each read takes,
per nucleotide, an insertion of a random base before it (``ins``), a deletion (``dels``), or a
substitution by one of the three other bases (``sub``), plus rare long deletions
(``long_del``: start rate per nucleotide, 2 to 10 nt long, so about 6x that rate of
nucleotides is lost in them: the presets set it so, e.g. 0.4 % lost for the nanopore profile); half of the reads are reverse
complemented, and the reads are shuffled.  Read names say nothing about their oligo.

Position and context (``end_boost``, ``end_len``, ``homopolymer``; zero in every preset but
``nanopore``, whose reads are then drawn by a separate kernel, so that the other presets keep
their exact outputs): the error rates of a nucleotide at distance ``d`` from the nearer read end
are scaled by ``1 + end_boost * (exp(-d_start / end_len) + exp(-d_end / end_len))``, and its
insertion and deletion rates also by ``1 + homopolymer * (h - 1)`` inside a run of ``h``
identical bases; both factors are normalised over each oligo so that the mean rates stay ``sub``,
``ins`` and ``dels``.  Half of the insertions repeat the next base (``dup_ins``; nanopore reads
overcall and undercall runs).  ``read_spread``: each read's rates are further scaled by a
lognormal factor of mean 1 and this sigma (capped at 3), as nanopore read accuracies vary
from read to read.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numba as nb
import numpy as np


@dataclass(frozen=True)
class Channel:
    sub: float = 0.0
    ins: float = 0.0
    dels: float = 0.0
    long_del: float = 0.0
    coverage: float = 10.0
    sigma: float = 0.3
    dropout: float = 0.0
    exact_coverage: bool = False
    reverse_fraction: float = 0.5
    end_boost: float = 0.0
    end_len: float = 8.0
    homopolymer: float = 0.0
    dup_ins: float = 0.0
    read_spread: float = 0.0
    description: str = field(default="custom", compare=False)

    def validate(self) -> "Channel":
        for name in ("sub", "ins", "dels", "long_del", "dropout", "reverse_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} rate must be between 0 and 1, got {v}")
        if self.sub + self.ins + self.dels > 0.5:
            raise ValueError("total error rate above 50 % per nucleotide is not a sequencer")
        if self.coverage <= 0:
            raise ValueError("coverage must be positive")
        if self.sigma < 0:
            raise ValueError("sigma must be >= 0")
        if min(self.end_boost, self.homopolymer, self.read_spread) < 0 or self.end_len <= 0 \
                or not 0 <= self.dup_ins <= 1:
            raise ValueError("end_boost, homopolymer and read_spread must be >= 0, end_len > 0, dup_ins in [0, 1]")
        return self

    @property
    def profiled(self) -> bool:
        """Whether the rates depend on the position and the homopolymer context."""
        return bool(self.end_boost or self.homopolymer or self.dup_ins or self.read_spread)

    def quality_char(self) -> str:
        p = max(self.sub + self.ins + self.dels + self.long_del, 1e-4)
        q = int(min(40, max(2, round(-10 * np.log10(p)))))
        return chr(33 + q)


#: Profiles of the field (DNA-Storalator presets, Press et al. 2020) and the setting of Pic & Antonini's experiment.
PRESETS = {
    "miseq": Channel(sub=0.0013, ins=0.0006, dels=0.0010, long_del=0.00003, sigma=0.3,
                     description="Twist synthesis + Illumina MiSeq"),
    "nextseq": Channel(sub=0.0071, ins=0.0041, dels=0.0028, sigma=0.3,
                       description="Twist synthesis + Illumina NextSeq"),
    "hedges": Channel(sub=0.024, ins=0.004, dels=0.008, sigma=0.3,
                      description="HEDGES wet-lab error rates"),
    # nanopore: the IDT + MinION rates of DNA-Storalator (Chaykin et al., "DNA-Storalator:
    # end-to-end DNA storage simulator", 2022: 2.2 % sub, 1.7 % ins, 2.0 % del, and 0.4 % of the
    # nucleotides lost in long deletions), shaped as nanopore reads of synthetic DNA are:
    # insertions and deletions concentrated in homopolymer runs, mostly a run called one base
    # short or long, and more errors at the read starts and ends (Delahaye & Nicolas,
    # "Sequencing DNA with nanopores: troubles and biases", PLOS ONE 16(10) e0257521, 2021).
    # The shape parameters (ends 2.5x the mean within ~8 nt, a run of h bases h/2 + 1/2 times
    # the indels of a lone base, half of the insertions a repeat, per-read rates spread by a
    # lognormal factor of sigma 0.4, at most 3x) are this simulator's choice,
    # set to that qualitative profile, not fitted to a read set.
    "nanopore": Channel(sub=0.022, ins=0.017, dels=0.020, long_del=0.0007, sigma=0.3,
                        end_boost=1.5, end_len=8.0, homopolymer=0.5, dup_ins=0.5, read_spread=0.4,
                        description="IDT synthesis + Oxford Nanopore MinION (errors at the read ends and in runs)"),
    "nanopore-uniform": Channel(sub=0.022, ins=0.017, dels=0.020, long_del=0.0007, sigma=0.3,
                                description="IDT synthesis + Oxford Nanopore MinION, position-independent errors"),
    "paper": Channel(sub=0.01, coverage=1, sigma=0.0, exact_coverage=True,
                    description="Pic & Antonini: substitutions only, one read per oligo"),
}


def preset(name: str, **overrides) -> Channel:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None}).validate()


@nb.njit(cache=True, nogil=True)
def _revcomp_prefix(row, n):
    """Reverse-complement ``row[:n]`` (0..3 codes) in place: a read from the other strand."""
    for j in range(n // 2):
        a = row[j]
        row[j] = 3 - row[n - 1 - j]
        row[n - 1 - j] = 3 - a
    if n % 2 == 1:
        row[n // 2] = 3 - row[n // 2]


@nb.njit(cache=True)
def _corrupt(oligos, lengths, which, flip, sub, ins, dels, long_del, seed, out, out_len):
    np.random.seed(seed)
    for r in range(which.shape[0]):
        k = which[r]
        L = lengths[k]
        pos = 0
        i = 0
        while i < L:
            if np.random.random() < ins:
                out[r, pos] = np.random.randint(0, 4)
                pos += 1
            u = np.random.random()
            if u < long_del:
                i += np.random.randint(2, 11)
                continue
            if u < long_del + dels:
                i += 1
                continue
            b = oligos[k, i]
            if np.random.random() < sub:
                b = (b + np.random.randint(1, 4)) & 3
            out[r, pos] = b
            pos += 1
            i += 1
        if flip[r]:
            _revcomp_prefix(out[r], pos)
        out_len[r] = pos


@nb.njit(cache=True)
def _corrupt_profiled(oligos, lengths, which, flip, sub, ins, dels, long_del, end_boost, end_len, hp, dup,
                      spread, seed, out, out_len):
    """:func:`_corrupt` with the rates scaled by position and homopolymer run (see the module)."""
    np.random.seed(seed)
    L0 = oligos.shape[1]
    pm = np.empty(L0)
    im = np.empty(L0)
    for r in range(which.shape[0]):
        k = which[r]
        L = lengths[k]
        # per-position factors, normalised to a mean of 1 over the oligo
        s1 = 0.0
        s2 = 0.0
        i = 0
        while i < L:
            h = 1
            while i + h < L and oligos[k, i + h] == oligos[k, i]:
                h += 1
            for t in range(i, i + h):
                e = 1.0 + end_boost * (np.exp(-t / end_len) + np.exp(-(L - 1 - t) / end_len))
                pm[t] = e
                im[t] = e * (1.0 + hp * (h - 1))
                s1 += pm[t]
                s2 += im[t]
            i += h
        # this read's quality: a lognormal factor of mean 1 on all its rates
        q = np.exp(spread * np.random.standard_normal() - 0.5 * spread * spread) if spread > 0 else 1.0
        q = min(q, 3.0)
        for t in range(L):
            pm[t] *= q * L / s1
            im[t] *= q * L / s2
        pos = 0
        i = 0
        while i < L:
            if np.random.random() < ins * im[i]:
                if np.random.random() < dup:
                    out[r, pos] = oligos[k, i]
                else:
                    out[r, pos] = np.random.randint(0, 4)
                pos += 1
            u = np.random.random()
            if u < long_del * pm[i]:
                i += np.random.randint(2, 11)
                continue
            if u < long_del * pm[i] + dels * im[i]:
                i += 1
                continue
            b = oligos[k, i]
            if np.random.random() < sub * pm[i]:
                b = (b + np.random.randint(1, 4)) & 3
            out[r, pos] = b
            pos += 1
            i += 1
        if flip[r]:
            _revcomp_prefix(out[r], pos)
        out_len[r] = pos


def _run(packed, lengths, which, flip, ch: Channel, seed, out, out_len):
    if ch.profiled:
        _corrupt_profiled(packed, lengths, which, flip, ch.sub, ch.ins, ch.dels, ch.long_del, ch.end_boost,
                          ch.end_len, ch.homopolymer, ch.dup_ins, ch.read_spread, seed, out, out_len)
    else:
        _corrupt(packed, lengths, which, flip, ch.sub, ch.ins, ch.dels, ch.long_del, seed, out, out_len)


def reads_per_oligo(n_oligos: int, ch: Channel, rng: np.random.Generator, target: np.ndarray | None = None,
                    off_target: float = 0.0) -> np.ndarray:
    """How many reads each oligo gets.  ``target`` (bool per oligo): a selective amplification
    (PCR with one file's primer pair) before sequencing: the target oligos get ``coverage`` reads
    each on average, and the other oligos together a fraction ``off_target`` of all reads (in
    proportion to their copies)."""
    if target is not None and ch.exact_coverage:
        raise ValueError("a selective amplification draws reads by copy number, not an exact coverage")
    if ch.exact_coverage:
        counts = np.full(n_oligos, int(round(ch.coverage)), dtype=np.int64)
        if ch.dropout:
            counts[rng.random(n_oligos) < ch.dropout] = 0
        return counts
    w = rng.lognormal(0.0, ch.sigma, n_oligos) if ch.sigma > 0 else np.ones(n_oligos)
    if ch.dropout:
        w[rng.random(n_oligos) < ch.dropout] = 0.0
    if target is not None:
        target = np.asarray(target, dtype=bool)
        if not 0 <= off_target < 1:
            raise ValueError("the off-target fraction must be in [0, 1)")
        if not target.any():
            raise ValueError("no oligo carries the amplified primer pair")
        on, off = w[target].sum(), w[~target].sum()
        total = int(round(ch.coverage * int(target.sum()) / (1 - off_target)))
        if on == 0 or total == 0:
            return np.zeros(n_oligos, dtype=np.int64)
        p = np.where(target, w * (1 - off_target) / on, w * off_target / off if off > 0 else 0.0)
        return rng.multinomial(total, p / p.sum())
    total = int(round(ch.coverage * n_oligos))
    if w.sum() == 0 or total == 0:
        return np.zeros(n_oligos, dtype=np.int64)
    return rng.multinomial(total, w / w.sum())


def _plan(oligos, ch: Channel, seed: int, target, off_target):
    ch.validate()
    rng = np.random.default_rng(seed)
    n = len(oligos)
    lengths = np.array([len(o) for o in oligos], dtype=np.int64)
    maxlen = int(lengths.max()) if n else 0
    packed = np.zeros((n, maxlen), dtype=np.uint8)
    for k, o in enumerate(oligos):
        packed[k, :len(o)] = o
    counts = reads_per_oligo(n, ch, rng, target, off_target)
    which = np.repeat(np.arange(n, dtype=np.int64), counts)
    rng.shuffle(which)
    flip = rng.random(len(which)) < ch.reverse_fraction
    return packed, lengths, maxlen, which, flip, int(rng.integers(2**31 - 1))


def simulate(oligos: list[np.ndarray], ch: Channel, seed: int = 0, target: np.ndarray | None = None,
             off_target: float = 0.0):
    """Encoded oligos -> (reads as list of uint8 arrays, source oligo of each read, strand flips).

    The source and flips are returned for testing and measurement; a decoder never sees them.
    ``target``, ``off_target``: a selective amplification (:func:`reads_per_oligo`).
    """
    packed, lengths, maxlen, which, flip, cseed = _plan(oligos, ch, seed, target, off_target)
    cap = 2 * maxlen + 16
    out = np.zeros((len(which), cap), dtype=np.uint8)
    out_len = np.zeros(len(which), dtype=np.int64)
    _run(packed, lengths, which, flip, ch, cseed, out, out_len)
    reads = [out[r, :out_len[r]].copy() for r in range(len(which))]
    return reads, which, flip


SIM_CHUNK = 1 << 18


def simulate_chunks(oligos: list[np.ndarray], ch: Channel, seed: int = 0, target: np.ndarray | None = None,
                    off_target: float = 0.0, chunk: int = SIM_CHUNK):
    """:func:`simulate` in bounded memory: yields (reads, source oligos) ``chunk`` reads at a time,
    and finally the per-read sources of everything as ``(None, which)``.  With one chunk the reads
    are those of :func:`simulate` with the same seed."""
    packed, lengths, maxlen, which, flip, cseed = _plan(oligos, ch, seed, target, off_target)
    cap = 2 * maxlen + 16
    for k, a in enumerate(range(0, len(which), chunk)):
        w, f = which[a:a + chunk], flip[a:a + chunk]
        out = np.zeros((len(w), cap), dtype=np.uint8)
        out_len = np.zeros(len(w), dtype=np.int64)
        _run(packed, lengths, w, f, ch, (cseed + k) % (2**31 - 1), out, out_len)
        yield [out[r, :out_len[r]] for r in range(len(w))], w
    yield None, which
