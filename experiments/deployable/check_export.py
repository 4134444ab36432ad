"""Export a deployable model with ``ebprop export`` (packed and C) and check that both classify
the whole MNIST test set exactly as the float EBP-D path does; print the sizes.

    python experiments/deployable/check_export.py runs/deployable/auto-s1/model.npz --data-dir DIR
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ebprop import load_model
from ebprop.datasets import load_dataset
from ebprop.packed import PackedNetwork


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--data-dir", required=True)
    args = ap.parse_args()
    model = load_model(args.model)
    est, pre = model.estimator, model.preprocessor
    ds = load_dataset("mnist", args.data_dir)
    float_d = est.predict(pre.transform(ds.X_test, np.dtype(est.dtype)), readout="deterministic")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ebpb, cdir = tmp / "model.ebpb", tmp / "c"
        for cmd in (["export", args.model, "-o", str(ebpb)],
                    ["export", args.model, "--format", "c", "-o", str(cdir)]):  # fmt: skip
            subprocess.run([sys.executable, "-m", "ebprop", *cmd], check=True)
        packed = PackedNetwork.load(ebpb).predict(ds.X_test)  # class labels
        labels = np.asarray(est.classes_)
        same_packed = np.array_equal(packed, float_d)
        # The C model on the host, fed the raw test images.
        (tmp / "main.c").write_text(
            '#include <stdio.h>\n#include "model.h"\nint main(void){unsigned char p[784];'
            'while(fread(p,1,784,stdin)==784)printf("%d\\n",ebprop_predict(p));return 0;}\n'
        )
        subprocess.run(["gcc", "-O2", "-std=c99", "-I", str(cdir), str(tmp / "main.c"),
                        str(cdir / "model.c"), "-o", str(tmp / "run")], check=True)  # fmt: skip
        out = subprocess.run([str(tmp / "run")], input=ds.X_test.astype(np.uint8).tobytes(),
                             capture_output=True, check=True).stdout.split()  # fmt: skip
        c_pred = labels[np.array([int(v) for v in out])]
        same_c = np.array_equal(c_pred, float_d)
        err = float(np.mean(float_d != ds.y_test))
        print(f"EBP-D test error {100 * err:.2f} % on {len(ds.y_test)} images")
        size = ebpb.stat().st_size
        print(f"packed (.ebpb) identical to float EBP-D: {same_packed}; size {size:,} B")
        print(f"C (host gcc) identical to float EBP-D: {same_c}")
    return 0 if same_packed and same_c else 1


if __name__ == "__main__":
    sys.exit(main())
