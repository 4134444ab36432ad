#!/usr/bin/env bash
# Run (or resume) the training runs listed in a queue file, N at a time, one BLAS thread each.
# Each line: NAME ARGS... (ebprop train options). A run folder that exists is resumed, so the
# queue can be restarted after a session ends: `bash run_queue.sh QUEUE [N] [ROOT]`.
set -u
queue=$1; jobs=${2:-2}; root=${3:-runs/deployable}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$root"
one() {
  name=$1; shift
  epochs=$(printf '%s\n' "$@" | grep -A1 -x -- --epochs | tail -1)
  if [ -f "$root/$name/options.json" ]; then  # resume (a no-op when it has run $epochs epochs)
    ebprop train --resume "$root/$name" --epochs "$epochs" -q > "$root/$name.log" 2>&1
  else
    ebprop train "$@" --out "$root/$name" -q > "$root/$name.log" 2>&1
  fi
  echo "finished $name: $(tail -3 "$root/$name.log" | head -1)"
}
export -f one; export root
grep -v '^\s*#' "$queue" | grep -v '^\s*$' | xargs -P "$jobs" -L 1 bash -c 'one "$@"' _
