#!/usr/bin/env bash
# Build the wheel, install it in a fresh virtualenv and use it from outside the source tree:
# `dnaimg models` lists the shipped models, `dnaimg encode` / `dnaimg decode` round-trip the example.
#
# Slow (minutes: it installs torch and every dependency), so not part of the default test suite;
# `pytest -m slow tests/test_zoo.py` runs it.  torch is installed first as TORCH_SPEC (default
# torch==2.13.0: with pip's find-links pointing at a local CPU wheel this avoids downloading the
# multi-GB CUDA build); the other dependencies come from the package index.
#
#   scripts/check_wheel.sh            PYTHON=python3.11 TORCH_SPEC=torch==2.13.0 KEEP=1 (keep the temp dir)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/dnaimg-wheel.XXXXXX")
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$TMP"' EXIT; fi
start=$SECONDS
step() { echo "== [$((SECONDS - start))s] $*"; }
fail() { echo "check_wheel: FAIL: $*" >&2; exit 1; }

# 1. the wheel.  Built in a copy of the tree (tracked and untracked-but-not-ignored files), so a
#    stale build/ folder cannot slip removed modules into it and the work tree is left untouched.
step "wheel from $REPO"
SRC=$TMP/src
mkdir -p "$SRC"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' f; do if [[ -e "$f" ]]; then printf '%s\0' "$f"; fi; done \
        | tar --null -T - -cf -) | tar -xf - -C "$SRC"
else
    cp -a "$REPO/." "$SRC/"
    rm -rf "$SRC/build" "$SRC/.venv"
fi
(cd "$SRC" && "$PYTHON" -m pip wheel --no-deps -q -w "$TMP/dist" .)
WHEEL=$(ls "$TMP"/dist/dnaimg-*.whl)
echo "   $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"
SHIPPED=$(cd "$REPO/dnaimg/zoo/models" && ls *.json | sed 's/\.json$//' | sort)
"$PYTHON" -m zipfile -l "$WHEEL" > "$TMP/wheel.txt"
for m in $SHIPPED; do
    for ext in json safetensors; do
        grep -q "dnaimg/zoo/models/$m.$ext" "$TMP/wheel.txt" || fail "wheel lacks $m.$ext"
    done
done
! grep -Eq "^(tests|scripts)/" "$TMP/wheel.txt" || fail "wheel holds tests/ or scripts/"

# 2. a fresh virtualenv: torch first, then the wheel with its dependencies
step "venv ($("$PYTHON" --version)), $TORCH_SPEC"
"$PYTHON" -m venv "$TMP/venv"
VPY=$TMP/venv/bin/python
"$VPY" -m pip install -q "$TORCH_SPEC"
echo "   torch $("$VPY" -c 'import torch; print(torch.__version__)')"
step "install the wheel and its dependencies"
"$VPY" -m pip install -q "$WHEEL"
DNAIMG=$TMP/venv/bin/dnaimg

# 3. use it from elsewhere: the source tree must not be importable
RUN=$TMP/run
mkdir -p "$RUN"
cp "$REPO/examples/coffee.png" "$RUN/"
cd "$RUN"
unset PYTHONPATH DNAIMG_MODELS
where=$("$VPY" -c "import dnaimg, os; print(os.path.dirname(dnaimg.__file__))")
[[ "$where" == "$TMP/venv/"* ]] || fail "dnaimg imported from $where, not from the installed wheel"

step "dnaimg models"
"$DNAIMG" models > models.txt || fail "dnaimg models exited $?"
cat models.txt
for m in $SHIPPED; do
    grep -Eq "^$m( |:)" models.txt || fail "dnaimg models does not list $m"
done

step "dnaimg encode coffee.png"
"$DNAIMG" encode coffee.png -o coffee.fasta -q || fail "dnaimg encode exited $?"
[[ -s coffee.fasta ]] || fail "no FASTA written"
echo "   $(grep -c '^>' coffee.fasta) oligos"

step "dnaimg decode coffee.fasta"
"$DNAIMG" decode coffee.fasta -o decoded.png -q --strict --reference coffee.png || fail "dnaimg decode exited $?"
[[ -s decoded.png ]] || fail "no PNG written"
"$VPY" -c "
from PIL import Image
a, b = Image.open('coffee.png'), Image.open('decoded.png')
assert a.size == b.size, (a.size, b.size)
" || fail "decoded PNG has the wrong size"

step "OK: wheel installs and round-trips the example in $((SECONDS - start)) s"
