#!/usr/bin/env bash
# encode -> simulate (3 % substitutions, coverage 10) -> decode, on the example photograph.
set -euo pipefail
cd "$(dirname "$0")/.."
IMG=${1:-examples/coffee.png}
mkdir -p out
echo "== dnaimg encode $IMG -o out/demo.fasta"
dnaimg encode "$IMG" -o out/demo.fasta -q
echo "== dnaimg check out/demo.fasta --summary"
dnaimg check out/demo.fasta --summary
echo "== dnaimg decode out/demo.fasta -o out/demo_noiseless.png --reference $IMG   (the oligos as written)"
dnaimg decode out/demo.fasta -o out/demo_noiseless.png --reference "$IMG" -q | tail -1
echo "== dnaimg simulate out/demo.fasta -o out/demo_reads.fastq --sub-rate 0.03"
dnaimg simulate out/demo.fasta -o out/demo_reads.fastq --sub-rate 0.03
echo "== dnaimg decode out/demo_reads.fastq -o out/demo.png --reference $IMG"
dnaimg decode out/demo_reads.fastq -o out/demo.png --reference "$IMG" -q
echo "== done: out/demo.fasta (oligos to order), out/demo_reads.fastq (simulated reads), out/demo.png (decoded)"
