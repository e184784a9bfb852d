"""Write unlabelled mnist1d inputs for `edgesketch distill --transfer`: new samples from the dataset's own generator
(another seed than the built-in split, so none of them is a test sample). Their labels are dropped: the teacher labels
them. This is what a user with more unlabelled recordings than labelled ones would pass.

    python examples/studies/mnist1d_transfer.py -o build/mnist1d-transfer.npz [-n 36000] [--seed 1]
    edgesketch distill teacher.keras --data mnist1d -o m.esk --transfer build/mnist1d-transfer.npz
"""
import argparse
from pathlib import Path

import numpy as np


def fresh_inputs(n: int, seed: int = 1) -> np.ndarray:
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = n, 1.0 - 1e-9, seed
    d = make_dataset(args)
    return np.concatenate([d["x"], d["x_test"]]).astype(np.float32)[:n]


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("-n", type=int, default=36000)
    ap.add_argument("--seed", type=int, default=1, help="generator seed (the built-in split uses 42)")
    a = ap.parse_args()
    if a.seed == 42:
        ap.error("seed 42 regenerates the built-in split, test samples included; use another seed")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, x=fresh_inputs(a.n, a.seed))
    print(f"wrote {a.n:,} unlabelled mnist1d inputs to {a.out}")
