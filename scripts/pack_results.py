"""Pack a campaign directory for transport: run metadata as a tar.gz, all test scores in one npz.

    python scripts/pack_results.py results/fmnist OUT_DIR      # pack
    python scripts/pack_results.py --unpack OUT_DIR results/fmnist   # rebuild scores.csv files from the npz
"""

import sys
import tarfile
from pathlib import Path

import numpy as np


def pack(root: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    keys, scores, labels = [], [], []
    with tarfile.open(out / "runs_meta.tar.gz", "w:gz") as tar:
        for p in sorted(root.rglob("*")):
            if p.suffix == ".png" and "-g0-s0" not in str(p):  # keep figures of the first seed at gamma 0 only
                continue
            if p.is_file() and p.suffix != ".safetensors" and p.name != "scores.csv":
                tar.add(p, arcname=str(p.relative_to(root)))
    for csv in sorted(root.rglob("scores.csv")):
        data = np.loadtxt(csv, delimiter=",", skiprows=1, ndmin=2)
        keys.append(str(csv.parent.relative_to(root)))
        scores.append(data[:, 1].astype(np.float32))
        labels.append(data[:, 2].astype(np.int8))
    np.savez_compressed(out / "scores.npz", keys=np.array(keys), scores=np.array(scores, dtype=object),
                        labels=np.array(labels, dtype=object))


def unpack(src: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    with tarfile.open(src / "runs_meta.tar.gz") as tar:
        tar.extractall(root, filter="data")
    z = np.load(src / "scores.npz", allow_pickle=True)  # our own file, written above
    for key, s, y in zip(z["keys"], z["scores"], z["labels"]):
        lines = ["index,score,label"] + [f"{i},{float(a):.6g},{int(b)}" for i, (a, b) in enumerate(zip(s, y))]
        (root / key / "scores.csv").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    if sys.argv[1] == "--unpack":
        unpack(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        pack(Path(sys.argv[1]), Path(sys.argv[2]))
