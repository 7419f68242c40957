#!/usr/bin/env bash
# encode -> simulate (3 % substitutions, coverage 10) -> decode, on the example photograph.
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${1:-examples/coffee.png}
mkdir -p out
echo "== dnaimg encode $IMG -o out/demo.fasta --codec robust   (the autoencoder: survives one noisy read per oligo)"
dnaimg encode "$IMG" -o out/demo.fasta --codec robust -q
echo "== dnaimg check out/demo.fasta --summary"
dnaimg check out/demo.fasta --summary
echo "== dnaimg decode out/demo.fasta -o out/demo_noiseless.png --reference $IMG   (the oligos as written)"
dnaimg decode out/demo.fasta -o out/demo_noiseless.png --reference "$IMG" -q | tail -1
echo "== dnaimg simulate out/demo.fasta -o out/demo_reads.fastq --sub-rate 0.03"
dnaimg simulate out/demo.fasta -o out/demo_reads.fastq --sub-rate 0.03
echo "== dnaimg decode out/demo_reads.fastq -o out/demo.png --reference $IMG"
dnaimg decode out/demo_reads.fastq -o out/demo.png --reference "$IMG" -q
echo "== dnaimg encode $IMG -o out/demo_avif.fasta --rate 0.8 --redundancy 0.2   (the default codec, AVIF: exact recovery)"
dnaimg encode "$IMG" -o out/demo_avif.fasta --rate 0.8 --redundancy 0.2 -q
echo "== dnaimg simulate out/demo_avif.fasta -o out/demo_avif.fastq --preset nextseq --coverage 6 --dropout 0.05"
dnaimg simulate out/demo_avif.fasta -o out/demo_avif.fastq --preset nextseq --coverage 6 --dropout 0.05
echo "== dnaimg decode out/demo_avif.fastq -o out/demo_avif.png --reference $IMG --strict"
dnaimg decode out/demo_avif.fastq -o out/demo_avif.png --reference "$IMG" --strict -q
echo "== done: out/demo.fasta (oligos to order), out/demo_reads.fastq (simulated reads), out/demo.png (decoded);"
echo "   out/demo_avif.* the same with AVIF bytes, an outer code and 5 % of the oligos lost"
