"""Writes notebooks/05_leaderboard.ipynb (source only; execute with the runner)."""
from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell


def tagged(src, *tags):
    c = code(src)
    c.metadata["tags"] = list(tags)
    return c


nb = nbf.v4.new_notebook()
nb.cells = [
    md("""# Cross-paper leaderboard

The four papers never evaluated each other's methods under each other's protocols. This chapter does: every
method in the registry, explained on the same photos, is scored under every protocol the papers use —
the pixel-flip curve of {cite}`ikeno2018invariant`, LOR and S_key of {cite}`luo2021leg`, the insertion/deletion
AUCs of {cite}`petsiuk2018rise` and {cite}`khorram2021igospp`, and the cascading-randomisation sanity check of
{cite}`adebayo2018sanity` — with the cost of each explanation. Explanations come from the shared result cache:
a map a chapter already computed with the same settings is reused, not recomputed.

The honest answer to "which method is best" is "under which protocol": the last table measures how much the
protocols agree."""),
    tagged("""# Parameters (papermill). Defaults = the `smoke` profile: 2 photos, tiny budgets.
model = "efficientnet_lite0"
weights = None
data_dir = None
labels = None
n_images = 2
device = "cpu"
profile = "smoke"
seed = 0
methods = {
    "gradient": {},
    "gradcam": {},
    "rise": {"n_masks": 200},
    "extremal_perturbation": {"max_iter": 20},
    "invariant_stochastic": {"iterations": 10, "M": 8},
    "leg": {"n_samples": 50},
    "igos_pp": {"iterations": 2, "ig_steps": 3},
}
protocols = ["pixel_flip", "lor", "skey_dist-100", "skey_black", "skey_white", "skey_mean", "skey_noise",
             "del_rise", "ins_rise", "del_igospp", "ins_igospp", "sanity"]
protocol_settings = {"rise_step": 7168, "igospp_grid": 7, "lor_alpha": 0.2, "skey_grid": 20}""", "parameters"),
    code("""import warnings

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

import saliency_core as sc
from saliency_core import leaderboard, plotting
from saliency_core.runtime import configure

warnings.filterwarnings("ignore")
configure()
plotting.use_style()
clf = sc.load_model(model, weights=weights, device=device)
records = sc.load_folder(data_dir, labels, n_images, seed) if data_dir else sc.embedded_images()[:n_images]
cache = sc.ResultCache()
scores, cost_rows = leaderboard.evaluate(clf, records, methods, protocols, cache=cache,
                                         settings={**protocol_settings, "seed": seed})
print(f"{len(methods)} methods x {len(records)} images x {len(protocols)} protocols")"""),
    md("""## Scores

Mean over photos with a 95 % percentile-bootstrap interval (fixed seed). Arrows give the direction of
"better". With the smoke profile's two photos the intervals are wide: read the ranking, not the decimals."""),
    code("""summary = leaderboard.summarize(scores, seed=seed)
arrow = {p: ("↑" if up else "↓") for p, up in leaderboard.PROTOCOLS.items()}
summary["cell"] = summary.apply(lambda r: f"{r['mean']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]", axis=1)
table = summary.pivot(index="method", columns="protocol", values="cell")[protocols]
table.columns = [f"{p} {arrow[p]}" for p in protocols]
table"""),
    md("""## Cost per explanation

Images forwarded and back-propagated through the model, and wall time, as measured when the explanation
was first computed (a cached explanation keeps its original cost)."""),
    code("""leaderboard.costs(cost_rows).round(2)"""),
    md("""## Rankings per protocol and how much the protocols agree

Rank 1 is best under each protocol. The heat map gives Kendall's τ between the method rankings of two
protocols: 1 means the same order, 0 no relation, −1 the reverse order."""),
    code("""ranks = leaderboard.rankings(summary)[protocols]
display(ranks)
tau = leaderboard.rank_agreement(ranks)
fig, ax = plt.subplots(figsize=(7, 5.6))
sns.heatmap(tau, vmin=-1, vmax=1, cmap=plotting.DIVERGING, annot=True, fmt=".1f", annot_kws={"size": 6}, ax=ax,
            cbar_kws={"label": "Kendall τ"})
plt.show()"""),
    code("""import numpy as np

off = ~np.eye(len(tau), dtype=bool)
print(f"mean Kendall tau between protocols: {np.nanmean(tau.to_numpy()[off]):.2f}")"""),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.metadata["language_info"] = {"name": "python"}
Path(__file__).resolve().parent.parent.joinpath("notebooks", "05_leaderboard.ipynb").write_text(nbf.writes(nb))
