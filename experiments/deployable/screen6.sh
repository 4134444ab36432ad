#!/usr/bin/env bash
# Session 6 screen: does stopping reinforcement after polarisation (plain EBP again, fields kept)
# let the deployed network keep learning on shifted images? 784-200-200-10, seed 0, shift 1,
# init variance 30; 15 plain epochs (one run), then forks (fork.py) with ρ = 1.0001 from epoch 15:
# never stopped / stopped at 18 / stopped at 21, each to 31 epochs; then (second screen, with
# shifted images the update keeps working) slower ρ = 1.00005 and 1.00003 from 15. Resumable.
set -eu
root=${1:-runs/screen6}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
base=$root/base15
if [ ! -f "$base/summary.json" ]; then
  if [ -f "$base/options.json" ]; then ebprop train --resume "$base" --epochs 15 -q
  else ebprop train --dataset mnist --hidden 200 200 --epochs 15 --seed 0 --select-by deterministic \
      --reinforcement hidden=1.0001,start=15 --init-variance 30 --augment-shift 1 --jobs 1 --out "$base" -q
  fi
fi
for spec in "nostop:hidden=1.0001,start=15" "stop18:hidden=1.0001,start=15,stop=18" \
    "stop21:hidden=1.0001,start=15,stop=21" "slow5:hidden=1.00005,start=15" "slow3:hidden=1.00003,start=15"; do
  name=${spec%%:*}; sched=${spec#*:}
  [ -d "$root/$name" ] || python experiments/deployable/fork.py "$base" "$root/$name" "$sched"
  ebprop train --resume "$root/$name" --epochs 31 -q > "$root/$name.log" 2>&1
  echo "finished $name"
done
# Third step: the never-stopped and the ρ = 1.00005 runs continued to 41 epochs (the slower ρ had
# not finished polarising at 31).
for name in nostop slow5; do
  ebprop train --resume "$root/$name" --epochs 41 -q > "$root/$name-41.log" 2>&1
  echo "finished $name to 41"
done
