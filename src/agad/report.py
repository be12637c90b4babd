"""The visual report of a run (``agad report``) and its model card (``README.md`` of a run directory).

:func:`build_report` evaluates a run (:func:`agad.evaluation.evaluate_run`: its
own test split, or a labelled folder) and writes ONE self-contained HTML page:
every figure is a base64 PNG inside it, with no network access, no external
CSS and no script. Its sections (each an ``<section id=...>``):

- ``summary``: the model and the images evaluated;
- ``metrics``: AUROC, AUPR, F1 / precision / recall at the stored threshold,
  the best-F1 threshold of these labels, pixel AUROC and AUPRO when masks exist;
- ``curves``: the ROC and precision-recall curves;
- ``histogram``: normal and anomalous scores with the threshold line;
- ``confusion``: the confusion matrix at the threshold;
- ``training``: each loss term per epoch (history.jsonl), the kept epoch marked;
- ``false-positives`` / ``false-negatives``: the worst of each (highest-scoring
  normal images above the threshold, lowest-scoring anomalous ones at or below
  it) with input, reconstruction and residual heatmap.

:func:`model_card` turns a run record and its history into a short Markdown
model card for people who get the run directory without its command line.

>>> build_report("runs/demo", out="report.html").path     # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["GALLERY_SIZE", "REPORT_SECTIONS", "Report", "build_report", "loss_terms", "model_card", "render_report"]

GALLERY_SIZE = 6  # worst false positives and worst false negatives shown, each
REPORT_SECTIONS = ("summary", "metrics", "curves", "histogram", "confusion", "training", "false-positives",
                   "false-negatives")
_BOOKKEEPING = {"epoch", "seconds", "steps", "d_resets"}  # history fields that are not loss terms
_STYLE = """
body { font-family: sans-serif; margin: 24px auto; max-width: 1150px; color: #222; background: #fff; }
h1 { font-size: 22px; border-bottom: 3px solid #c0392b; padding-bottom: 6px; }
h2 { font-size: 17px; margin-top: 28px; color: #1f4e79; }
table { border-collapse: collapse; margin: 8px 0; }
td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; font-size: 13px; }
th { background: #eef3f8; }
.note { color: #8a5a00; background: #fff6e0; padding: 6px 10px; border-left: 4px solid #e0a000; font-size: 13px; }
.muted { color: #666; font-size: 12px; }
img { max-width: 100%; }
"""


# ------------------------------------------------------------------ figures
def _plt():
    from .figures import plt  # matplotlib with the Agg backend

    return plt


def _png(fig) -> str:
    """The figure as base64 PNG text; the figure is closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _img(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _curves_figure(y: np.ndarray, scores: np.ndarray, metrics: dict[str, Any]) -> str:
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = _plt()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.2))
    fpr, tpr, _ = roc_curve(y, scores)
    a.plot(fpr, tpr, color="tab:blue", lw=2, label=f"AUROC {metrics['auroc']:.3f}")
    a.plot([0, 1], [0, 1], color="0.6", ls="--", lw=1, label="chance")
    a.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC curve", xlim=(0, 1), ylim=(0, 1.02))
    a.legend(loc="lower right")
    precision, recall, _ = precision_recall_curve(y, scores)
    b.plot(recall, precision, color="tab:red", lw=2, label=f"AUPR {metrics['aupr']:.3f}")
    b.axhline(float(np.mean(y)), color="0.6", ls="--", lw=1, label=f"share of anomalies {np.mean(y):.2f}")
    b.set(xlabel="recall", ylabel="precision", title="precision-recall curve", xlim=(0, 1), ylim=(0, 1.02))
    b.legend(loc="lower left")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    return _png(fig)


def _histogram_figure(y: np.ndarray, scores: np.ndarray, threshold: float, best: float | None) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(10, 3.8))
    n_bins = int(np.clip(np.sqrt(len(scores)), 10, 60))
    edges = np.histogram_bin_edges(np.append(scores, threshold), bins=n_bins)
    for label, colour, name in ((0, "tab:blue", "normal"), (1, "tab:red", "anomalous")):
        s = scores[y == label]
        if len(s):
            ax.hist(s, bins=edges, density=True, alpha=0.55, color=colour, label=f"{name} ({len(s)})")
    ax.axvline(threshold, color="black", lw=2, label=f"threshold {threshold:.4g}")
    if best is not None:
        ax.axvline(best, color="0.4", lw=1.5, ls="--", label=f"best-F1 threshold {best:.4g} (not stored)")
    ax.set(xlabel="anomaly score (higher = more anomalous)", ylabel="density", title="scores by true label")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def _confusion(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """[[TN, FP], [FN, TP]]: rows the true label, columns the prediction."""
    return np.array([[int(((y == t) & (pred == p)).sum()) for p in (0, 1)] for t in (0, 1)])


def _confusion_figure(cm: np.ndarray, threshold: float) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 3.9))
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(2):
        for j in range(2):
            ax.text(j, i, f"{cm[i, j]}\n{100 * share[i, j]:.1f}%", ha="center", va="center", fontsize=12,
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks([0, 1], ["normal", "anomaly"])
    ax.set_yticks([0, 1], ["normal", "anomalous"])
    ax.set(xlabel="predicted (score > threshold)", ylabel="true label", title=f"at threshold {threshold:.4g}")
    return _png(fig)


def loss_terms(history: Sequence[dict[str, float]]) -> list[str]:
    """The fields of history.jsonl that are measured per epoch (loss terms, validation numbers)."""
    seen: dict[str, None] = {}
    for h in history:
        for k in h:
            if k not in _BOOKKEEPING:
                seen.setdefault(k, None)
    return sorted(seen, key=lambda k: (not k.startswith("G/"), not k.startswith("D/"), k))


def _training_figure(history: Sequence[dict[str, float]], kept_epoch: int | None) -> str | None:
    terms = loss_terms(history)
    if not terms:
        return None
    plt = _plt()
    cols = min(4, len(terms))
    rows = math.ceil(len(terms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 2.3 * rows), squeeze=False)
    epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
    for ax, term in zip(axes.flat, terms):
        values = [h.get(term, float("nan")) for h in history]
        ax.plot(epochs, values, marker="o" if len(epochs) < 30 else None, ms=3, color="tab:purple")
        if kept_epoch is not None:
            ax.axvline(kept_epoch, color="tab:green", ls=":", lw=1.5)
        ax.set_title(term, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(terms):]:
        ax.axis("off")
    fig.suptitle("per epoch (dotted: the kept epoch)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def _gallery_figure(x: np.ndarray, recon: np.ndarray | None, names: list[str], scores: np.ndarray) -> str:
    from .evaluation import residual_map
    from .figures import to_display

    plt = _plt()
    cols = 3 if recon is not None else 1
    fig, axes = plt.subplots(len(x), cols, figsize=(2.0 * cols + 0.8, 2.0 * len(x)), squeeze=False)
    maps = residual_map(x.astype(np.float32) / 127.5 - 1.0, recon) if recon is not None else None
    im = None
    for i in range(len(x)):
        d = to_display(x[i])
        axes[i, 0].imshow(d, cmap="gray" if d.ndim == 2 else None, vmin=0, vmax=1)
        if recon is not None:
            r = to_display(recon[i])
            axes[i, 1].imshow(r, cmap="gray" if r.ndim == 2 else None, vmin=0, vmax=1)
            im = axes[i, 2].imshow(maps[i], cmap="inferno", vmin=0, vmax=1)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        name = Path(names[i]).name if os.sep in names[i] else f"#{names[i]}"
        axes[i, 0].set_ylabel(f"{name[:24]}\nscore {scores[i]:.4g}", fontsize=8)
    for ax, title in zip(axes[0], ("input", "reconstruction", "|x - G(x)|")):
        ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.12, right=0.86, wspace=0.05, hspace=0.12)
    if im is not None:  # one colour scale for every heatmap: 0..1 on the [-1, 1] scale, as in the overlays
        fig.colorbar(im, cax=fig.add_axes([0.88, 0.3, 0.02, 0.4]))
    return _png(fig)


# ------------------------------------------------------------------ HTML
@dataclass
class Report:
    """A written report: where it is, what it shows, and how long evaluating and drawing took."""

    path: Path
    evaluation: Any  # agad.evaluation.Evaluation
    seconds: float


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _table(rows: Sequence[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{html.escape(title)}</h2>\n{body}\n</section>\n'


def _worst(y: np.ndarray, scores: np.ndarray, pred: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the worst false positives (highest scores first) and false negatives (lowest first)."""
    fp = np.flatnonzero((y == 0) & (pred == 1))
    fn = np.flatnonzero((y == 1) & (pred == 0))
    return fp[np.argsort(-scores[fp], kind="stable")][:n], fn[np.argsort(scores[fn], kind="stable")][:n]


def render_report(ev, history: Sequence[dict[str, float]], *, gallery: int = GALLERY_SIZE) -> str:
    """The HTML page of an :class:`agad.evaluation.Evaluation` and the run's history (one string)."""
    model, images, m = ev.model, ev.images, ev.metrics
    y, scores, pred, threshold = images.y, ev.scores, ev.predictions, ev.threshold
    meta, cfg = model.meta, model.cfg
    both = len(np.unique(y)) > 1
    parts = []
    summary = _table([
        ("run directory", str(model.run_dir)),
        ("method / backbone", f"{cfg.method} / {cfg.backbone}"),
        ("input", f"{model.channels} x {model.image_size} x {model.image_size}"),
        ("trained on", f"{cfg.data}, normal class {cfg.normal_class}"),
        ("epochs (kept)", f"{cfg.epochs} ({meta.get('kept_epoch', 'last')})"),
        ("threshold", f"{threshold:.6g} ({meta.get('threshold_source', 'stored with the model')})"),
        ("evaluated on", images.describe()),
    ])
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in images.notes)
    parts.append(_section("summary", "Model and data", summary + notes))

    rows = [("AUROC", m.get("auroc")), ("AUPR", m.get("aupr")),
            ("F1 at the threshold", m.get("f1_at_threshold")),
            ("precision at the threshold", m.get("precision_at_threshold")),
            ("recall at the threshold", m.get("recall_at_threshold")),
            ("accuracy at the threshold", m.get("accuracy_at_threshold")),
            ("best-F1 threshold (reported, never stored)", m.get("best_f1_threshold")),
            ("best F1", m.get("best_f1"))]
    if "pixel_auroc" in m:
        rows += [("pixel AUROC", m["pixel_auroc"]), (f"AUPRO (FPR up to {m['aupro_fpr_limit']})", m["aupro"])]
    parts.append(_section("metrics", "Metrics", _table(rows)))

    if both:
        parts.append(_section("curves", "ROC and precision-recall curves",
                              _img(_curves_figure(y, scores, m), "ROC and precision-recall curves")))
    else:
        parts.append(_section("curves", "ROC and precision-recall curves",
                              '<p class="note">one class only: no curves</p>'))
    parts.append(_section("histogram", "Scores of normal and anomalous images",
                          _img(_histogram_figure(y, scores, threshold, m.get("best_f1_threshold")),
                               "score histograms with the threshold")))
    cm = _confusion(y, pred)
    cm_table = ("<table><tr><th></th><th>predicted normal</th><th>predicted anomaly</th></tr>"
                f"<tr><th>normal</th><td>{cm[0, 0]} (TN)</td><td>{cm[0, 1]} (FP)</td></tr>"
                f"<tr><th>anomalous</th><td>{cm[1, 0]} (FN)</td><td>{cm[1, 1]} (TP)</td></tr></table>")
    parts.append(_section("confusion", "Confusion matrix at the threshold",
                          _img(_confusion_figure(cm, threshold), "confusion matrix") + cm_table))
    training = _training_figure(history, meta.get("kept_epoch"))
    parts.append(_section("training", "Training curves per loss term",
                          _img(training, "training curves") if training else
                          '<p class="note">no history.jsonl in the run directory</p>'))

    fp, fn = _worst(y, scores, pred, gallery)
    for sid, title, idx, kind, count in (
        ("false-positives", "Worst false positives (normal images above the threshold)", fp, "false positives",
         int(cm[0, 1])),
        ("false-negatives", "Worst false negatives (anomalous images at or below the threshold)", fn,
         "false negatives", int(cm[1, 0])),
    ):
        if count == 0:
            body = f'<p class="muted">no {kind} at this threshold</p>'
        elif len(idx) == 0:
            body = f'<p class="muted">{count} {kind}; none shown (gallery size 0)</p>'
        else:
            recon = model.reconstruct(images.x[idx]) if model.reconstructs else None
            body = _img(_gallery_figure(images.x[idx], recon, [images.names[i] for i in idx], scores[idx]), title)
            body += "<p class='muted'>" + ", ".join(html.escape(images.names[i]) for i in idx) + "</p>"
        parts.append(_section(sid, title, body))

    title = f"AGAD report: {model.run_dir.name or model.run_dir}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n" + "".join(parts) +
            f'<p class="muted">agad {html.escape(str(meta.get("agad_version", "")))}</p>\n</body></html>\n')


def build_report(
    run_dir: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    overwrite: bool = False,
    normal_class: str | None = None,
    normal_dirs: Sequence[str | os.PathLike] = (),
    abnormal_dirs: Sequence[str | os.PathLike] = (),
    normal_test_dirs: Sequence[str | os.PathLike] = (),
    mask_dirs: Sequence[str | os.PathLike] = (),
    device: str | None = None,
    batch_size: int | None = None,
    sigma: float | None = None,
    gallery: int = GALLERY_SIZE,
) -> Report:
    """Evaluate ``run_dir`` (on ``data``, or its own test split) and write the HTML report to ``out``.

    ``out`` defaults to ``RUN_DIR/report.html``; an existing file is replaced only with ``overwrite``. The
    page is written atomically (:func:`agad.rundir.atomic_write_text`) once everything is drawn.
    """
    import time

    from .evaluation import evaluate_run
    from .errors import AgadError
    from .rundir import atomic_write_text, check_output_file, read_history

    if isinstance(gallery, bool) or not isinstance(gallery, int) or gallery < 0:
        raise AgadError(f"The 'gallery' parameter must be an integer >= 0. Got {gallery!r} instead.")
    run_dir = Path(run_dir)
    out = check_output_file(run_dir / "report.html" if out is None else out, overwrite=overwrite,
                            example="report.html")
    t0 = time.perf_counter()
    ev = evaluate_run(run_dir, data, normal_class=normal_class, normal_dirs=normal_dirs,
                      abnormal_dirs=abnormal_dirs, normal_test_dirs=normal_test_dirs, mask_dirs=mask_dirs,
                      device=device, batch_size=batch_size, sigma=sigma)
    page = render_report(ev, read_history(run_dir), gallery=gallery)
    atomic_write_text(out, page)
    return Report(out, ev, time.perf_counter() - t0)


# ------------------------------------------------------------------ model card
def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def model_card(record: dict, history: list) -> str:
    """A short human-readable model card (Markdown) from a run record (config.json) and its history.

    >>> card = model_card({"model": {"method": "agad", "backbone": "naive", "in_channels": 1, "image_size": 32},
    ...                    "threshold": 0.5, "config": {"data": "mnist-sample", "normal_class": 0, "epochs": 2}},
    ...                   [{"epoch": 1, "G/con": 0.3}, {"epoch": 2, "G/con": 0.2}])
    >>> card.splitlines()[0]
    '# Model card: agad anomaly detector (naive backbone)'
    """
    model = record.get("model") or {}
    cfg = record.get("config") or {}
    data = record.get("data") or {}
    method, backbone = model.get("method", "?"), model.get("backbone", "?")
    c, s = model.get("in_channels", "?"), model.get("image_size", "?")
    try:
        from .methods import get_method

        summary = get_method(method).summary
    except Exception:  # an unknown method name still gets a card
        summary = f"method {method}"
    lines = [f"# Model card: {method} anomaly detector ({backbone} backbone)", "",
             f"{summary}. It gives each image an anomaly score (higher = more anomalous) and a label: 1 (anomaly) "
             "where the score is above the threshold stored with it, else 0 (normal).", ""]
    pre = record.get("preprocessing") or {}
    lines += ["## Input", "",
              f"- {c} channel(s) ({pre.get('color', 'grayscale' if c == 1 else 'RGB')}), resized to {s} x {s} "
              f"({pre.get('resize', 'bilinear')}); pixels scaled {pre.get('scale', 'x/127.5 - 1')}.",
              "- Image files are converted to this mode and size when read; arrays must have the same number "
              "of channels.", ""]
    classes = data.get("class_names")
    normal = cfg.get("normal_class")
    lines += ["## Training data", "", f"- source: {data.get('source', cfg.get('data', 'unknown'))}"]
    if classes:
        normal_name = classes[normal] if isinstance(normal, int) and 0 <= normal < len(classes) else normal
        if isinstance(normal, str):
            normal_name = normal
        lines.append(f"- normal class: {normal_name} (of {len(classes)} classes: {', '.join(map(str, classes[:12]))}"
                     f"{', ...' if len(classes) > 12 else ''})")
    elif normal is not None:
        lines.append(f"- normal class: {normal}")
    for key, name in (("n_normal_train", "normal training images"), ("n_anomaly_train", "labelled anomalies"),
                      ("n_validation", "validation images held out"), ("n_test", "test images")):
        if key in data:
            lines.append(f"- {name}: {data[key]}")
    lines.append("")
    lines += ["## Training", "",
              f"- {cfg.get('epochs', '?')} epoch(s), batch size {cfg.get('batch_size', '?')}, learning rate "
              f"{cfg.get('lr', '?')}, seed {cfg.get('seed', '?')}; kept epoch {record.get('kept_epoch', 'last')}"
              + (f"; trained in {record['train_seconds']:.0f} s" if isinstance(record.get("train_seconds"),
                                                                        (int, float)) else "")]
    kept = record.get("kept_epoch")
    row = next((h for h in history if h.get("epoch") == kept), history[-1] if history else None)
    if row:
        terms = [k for k in row if k not in _BOOKKEEPING]
        if terms:
            lines += ["", f"Loss terms at epoch {row.get('epoch', '?')}:", "", "| term | value |", "|---|---|"]
            lines += [f"| {k} | {_fmt(row[k])} |" for k in sorted(terms)]
    lines.append("")
    thr = record.get("threshold")
    source = str(record.get("threshold_source", "the training scores"))
    chosen = "calibration" in source or "validation" in source  # not the contamination quantile
    lines += ["## Threshold", "",
              f"- {_fmt(thr)}, from {source}"
              + (f" (contamination {record['contamination']})" if "contamination" in record and not chosen else "")
              + ".",
              "- It was learned from training or validation data only. `agad predict --threshold T` or "
              "`--contamination F` override it for one call; `agad calibrate RUN_DIR --data DIR` stores a new one.",
              ""]
    val = record.get("validation")
    if isinstance(val, dict) and val:
        lines += ["## Validation", ""] + [f"- {k}: {_fmt(v)}" for k, v in sorted(val.items())] + [""]
    lines += ["## Use", "", "RUN_DIR is this folder.", "", "```bash",
              "agad predict RUN_DIR images/ --out scores.csv --overlays overlays/",
              "agad evaluate RUN_DIR --data LABELLED_DIR", "agad report RUN_DIR --data LABELLED_DIR --out report.html",
              "agad export RUN_DIR --format onnx --out model.onnx", "```", ""]
    if method == "agad":
        lines += ["```python", "from agad import AGAD", "model = AGAD.load(\"RUN_DIR\")",
                  "scores = model.decision_function(images)   # anomaly scores",
                  "labels = model.predict(images)             # 1 = anomaly",
                  "maps = model.anomaly_map(images)           # per-pixel |x - G(x)|", "```", ""]
    lines += ["## Limitations", "",
              "- Scores compare images scored by this model only, not across models.",
              "- The model knows only the normal class it was trained on: images of another kind (another "
              "camera, size or colour) can score high without being anomalies.",
              "- `predict_proba` rescales scores with the training range; it is not a calibrated probability.", ""]
    env = record.get("environment") or {}
    lines += ["## Provenance", "", f"- agad {record.get('agad_version', '?')}, torch {env.get('torch', '?')}, "
              f"python {env.get('python', '?')}, trained on {env.get('device', '?')}"]
    if record.get("command"):
        lines.append(f"- command: `{record['command']}`")
    return "\n".join(lines) + "\n"
