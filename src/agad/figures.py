"""Figures drawn from tensors or saved artefacts (matplotlib, Agg backend, PNG written atomically)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


from .rundir import atomic_write_bytes  # noqa: E402


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())


def to_display(x: np.ndarray) -> np.ndarray:
    """(C, H, W) uint8 or [-1, 1] float -> (H, W) or (H, W, 3) floats in [0, 1] for imshow."""
    x = np.asarray(x, dtype=np.float32)
    x = x / 255.0 if x.max() > 1.5 else (x + 1.0) / 2.0
    x = np.clip(x, 0, 1)
    return x[0] if x.shape[0] == 1 else np.transpose(x, (1, 2, 0))


def pick_examples(labels: np.ndarray, per_group: int = 8) -> np.ndarray:
    """The first ``per_group`` normal and first ``per_group`` anomalous indices (deterministic)."""
    normal = np.flatnonzero(labels == 0)[:per_group]
    anomalous = np.flatnonzero(labels == 1)[:per_group]
    return np.concatenate([normal, anomalous])


def reconstruction_rows(rows: list[tuple[str, np.ndarray]], path: Path, *, title: str = "",
                        scores: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
    """One row of images per (name, images) pair; columns are the same test images."""
    n = len(rows[0][1])
    fig, axes = plt.subplots(len(rows), n, figsize=(1.1 * n, 1.2 * len(rows) + 0.4), squeeze=False)
    for r, (name, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            img = to_display(imgs[c])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0 and labels is not None:
                tag = "anomaly" if labels[c] else "normal"
                ax.set_title(tag if scores is None else f"{tag}\n{scores[c]:.2f}", fontsize=7,
                             color="tab:red" if labels[c] else "tab:green")
    if title:
        fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def reconstruction_figure(scorer, x_test: np.ndarray, y_test: np.ndarray, path: Path, *, device="cpu",
                          amp_dtype=None, per_group: int = 8, title: str = "") -> None:
    """Input row and reconstruction row for 8 normal and 8 anomalous test images (paper Fig. 2)."""
    from .scoring import score_images

    idx = pick_examples(y_test, per_group)
    x = x_test[idx]
    scores, recon = score_images(scorer, torch.from_numpy(x), device=device, amp_dtype=amp_dtype,
                                 return_reconstructions=True)
    reconstruction_rows([("input", x), ("G(x)", recon.numpy())], path, title=title, scores=scores,
                        labels=y_test[idx])
