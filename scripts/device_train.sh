#!/usr/bin/env bash
# Train the compact codec on a lent GPU machine for a fixed time and bring the result back.
# Runs THERE, from the repository root (the device call's command), after scripts/device_tree.sh
# slim and scripts/device_data.py here:
#
#   scripts/device_train.sh MINUTES NAME [dnaimg train options]
#   e.g. scripts/device_train.sh 8 compact-ms-v4 --data .device/data --init .device/init.pt \
#          --batch 16 --crop 256 --lr 1e-4 --steps 100000
#
# The machine has torch, numpy, numba, pillow, click and safetensors; `dnaimg train` needs
# nothing else.  Into $OUT (what the call sends back; files of at most 16 MiB): train.log, the
# run's checkpoint as fp16 weights without the optimiser (checkpoint-fp16.pt, ~14 MB: a CPU
# session resumes from it) and the exported model NAME.safetensors + NAME.json (its card).
# DEVICE (default cuda) and RUN (default: a new folder) may be set; DEVICE=cpu tries it here.
# The files must stay under 16 MiB each to come back (N=128, M=192: 13.4 and 13.8 MiB): a wider
# network does not fit.
set -euo pipefail
: "${OUT:?OUT (the folder that comes back) is not set}"
(($# >= 2)) || { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
minutes=$1 name=$2
shift 2
RUN=${RUN:-$(mktemp -d /tmp/dnaimg-run.XXXXXX)}      # a fresh run each call (a warm machine keeps /tmp)
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"
python3 -m dnaimg.cli train --arch compact --device "${DEVICE:-cuda}" --minutes "$minutes" --out "$RUN" "$@" 2>&1 \
  | tee "$OUT/train.log"
python3 - "$RUN" "$name" "$OUT" <<'PY'
import sys
import torch
from dnaimg.zoo.exact import export_compact
run, name, out = sys.argv[1:]
state = torch.load(f"{run}/checkpoint.pt", map_location="cpu", weights_only=True)
state.pop("opt", None)
state["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
torch.save(state, f"{out}/checkpoint-fp16.pt")
print("exported", export_compact(run, name, out))
PY
ls -l "$OUT"
