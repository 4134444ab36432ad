#!/usr/bin/env bash
# Round 4 (session 3): a slower ρ after 20 plain epochs. For each seed: 20 plain epochs
# (snapshot `base20-sN`, kept for forks), then ρ = 1.00003 per minibatch of 10 on the hidden
# layers (an e-fold of the field every ~6.7 epochs, against ~2 epochs for `auto`'s 1.0001) to
# epoch 60. Resumable: every step is skipped when its folder already holds it.
#   bash experiments/deployable/round4.sh SEED [SCHEDULE_NAME SCHEDULE EPOCHS]
set -eu
seed=$1; name=${2:-slow3}; sched=${3:-hidden=1.00003,start=20}; epochs=${4:-60}
root=runs/deployable
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
base=$root/base20-s$seed
if [ ! -f "$base/summary.json" ]; then
  if [ -f "$base/options.json" ]; then
    ebprop train --resume "$base" --epochs 20 -q > "$base.log" 2>&1
  else
    ebprop train --dataset mnist --hidden 500 500 --epochs 20 --seed "$seed" \
      --select-by deterministic --jobs 1 --out "$base" -q > "$base.log" 2>&1
  fi
fi
run=$root/$name-s$seed
[ -d "$run" ] || python experiments/deployable/fork.py "$base" "$run" "$sched"
ebprop train --resume "$run" --epochs "$epochs" -q > "$run.log" 2>&1
echo "finished $run: $(tail -3 "$run.log" | head -1)"
