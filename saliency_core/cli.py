"""The ``saliency`` command line (also ``python -m saliency_core``).

::

    saliency study SPEC.yaml [--data DIR --labels FILE --n N --seed S] [--workers K | --scheduler ADDR]
                             [--device cuda] [--out DIR] [--store DIR]
    saliency explain IMAGE --method NAME [--model M --weights W --target T --set key=value ...] --out map.png|map.npy
    saliency results STUDY_DIR [--format csv|parquet] [--out DIR]

``study`` runs a study (:mod:`saliency_core.study`) with a progress bar and writes its tables and provenance to
``--out`` (default ``<store>/studies/<name>``); Ctrl-C keeps every finished row, and the same command resumes.
``explain`` writes one map (``.npy``: the raw (H, W) array; ``.png``: the map over the image in the book's colour
convention). ``results`` prints a study folder's summary and exports its tables. The book runner stays
``python -m saliency_core.run``.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]


def _lists() -> str:
    from .methods import available_explainers
    from .models import available_models
    from .protocols import available_protocols

    def wrap(title: str, names: list[str]) -> str:
        return textwrap.fill(", ".join(names), width=100, initial_indent=f"{title}: ", subsequent_indent="  ")

    return "\n".join([wrap("methods", available_explainers()), wrap("protocols", available_protocols()),
                      wrap("models", available_models())])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saliency", description="Perturbation saliency at scale: studies, single explanations, result tables.",
        epilog=_lists() + "\n\nThe book: python -m saliency_core.run --profile {smoke,book,paper}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="{study,explain,results}")

    st = sub.add_parser("study", help="run a study (image x method x protocol) and write its tables",
                        description="Run a study spec (params/studies/*.yaml): resumable, on Dask.")
    st.add_argument("spec", help="study YAML file")
    st.add_argument("--data", help="image folder (replaces the spec's images)")
    st.add_argument("--labels", help="labels file of --data (CSV file,class_index or one label per line)")
    st.add_argument("--n", type=int, help="number of images (seeded subset of a folder; first N embedded photos)")
    st.add_argument("--seed", type=int, help="seed of the image subset")
    where = st.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, help="worker processes of a local Dask cluster (0 = this process; "
                                                   "default: one per core)")
    where.add_argument("--scheduler", help="address of an existing Dask scheduler, tcp://HOST:PORT")
    st.add_argument("--device", help="device of the workers' model (cpu, cuda)")
    st.add_argument("--out", help="folder for scores/curves/costs.parquet and provenance.json "
                                  "(default <store>/studies/<name>)")
    st.add_argument("--store", help="result store folder (default $SALIENCY_STORE or ./_cache)")
    st.add_argument("--no-progress", action="store_true", help="no progress bar")
    st.add_argument("--keep-going", action="store_true", help="run every task even when some fail")

    ex = sub.add_parser("explain", help="explain one image with one method",
                        description="Explain one image file and write the map.")
    ex.add_argument("image", help="image file")
    ex.add_argument("--method", required=True, help="registry name (see saliency --help)")
    ex.add_argument("--model", default="efficientnet_lite0",
                    help="model name (default efficientnet_lite0) or package.module:factory")
    ex.add_argument("--weights", help="state_dict file of the model (or 'random')")
    ex.add_argument("--target", type=int, help="class index to explain (default: the model's top-1)")
    ex.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a hyper-parameter of the method (value parsed as YAML), repeatable")
    ex.add_argument("--device", default="cpu")
    ex.add_argument("--out", required=True, help="map.npy (the (H, W) array) or map.png (overlay on the image)")
    ex.add_argument("--store", help="result store folder (default $SALIENCY_STORE or ./_cache)")
    ex.add_argument("--no-store", action="store_true", help="compute without reading or writing the store")

    rs = sub.add_parser("results", help="summarise and export a study folder",
                        description="Print a study folder's mean ± SE per method and protocol; export its tables.")
    rs.add_argument("folder", help="study folder (scores.parquet, curves.parquet, costs.parquet, provenance.json)")
    rs.add_argument("--format", choices=("csv", "parquet"), default="csv")
    rs.add_argument("--out", help="export folder (default: the study folder)")
    return parser


def _parse_set(items: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set {item!r} is not valid; accepted values: KEY=VALUE")
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def _cmd_study(args: argparse.Namespace) -> int:
    from .store import Store
    from .study import load_study, run

    study = load_study(args.spec, device=args.device)
    if any(v is not None for v in (args.data, args.labels, args.n, args.seed)):
        study = study.with_images(args.data, args.labels, args.n, args.seed)
    store = Store(args.store)
    scheduler = args.scheduler
    workers = args.workers
    try:
        res = run(study, workers=workers, scheduler=scheduler, progress=not args.no_progress, store=store,
                  out=args.out, errors="continue" if args.keep_going else "raise")
    except KeyboardInterrupt:
        print("\ninterrupted: every finished task is stored; run the same command again to resume", file=sys.stderr)
        return 130
    prov = res.provenance
    print(f"{study.name}: {len(res.scores)} scores, {len(res.costs)} explanations "
          f"({res.n_submitted} tasks run, {res.n_skipped} already stored) in {prov['runs'][-1]['wall_seconds']:.1f} s "
          f"→ {res.out}")
    _print_summary(res.scores)
    return 0


def _print_summary(scores) -> None:
    from .stats import mean_se_text, summarize

    if not len(scores):
        return
    s = summarize(scores, "value", ("method", "protocol"))
    s["cell"] = mean_se_text(s)
    table = s.pivot(index="method", columns="protocol", values="cell")
    table = table.reindex(index=list(dict.fromkeys(scores["method"])), columns=list(dict.fromkeys(scores["protocol"])))
    with __import__("pandas").option_context("display.width", 200, "display.max_columns", 50):
        print(table.to_string())


def _cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np

    from .data import load_image
    from .files import atomic_write
    from .methods import explainer_class, get_explainer
    from .store import Store
    from .study import load_study_model

    out = Path(args.out)
    if out.suffix.lower() not in (".npy", ".png"):
        raise ValueError(f"--out {str(out)!r} is not valid; accepted values: a .npy or .png file")
    explainer_class(args.method)  # a misspelt method fails before any loading
    params = _parse_set(args.set)
    clf = load_study_model(args.model, args.weights, args.device)
    x = clf.preprocess(load_image(args.image))
    explainer = get_explainer(args.method, clf, **params)
    store = Store(args.store, enabled=not args.no_store)
    e = store.explain(explainer, target=args.target, x=x)
    m = e.map.detach().cpu().float().numpy()
    if out.suffix.lower() == ".npy":
        atomic_write(out, lambda fh: np.save(fh, m, allow_pickle=False))
    else:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        from . import plotting

        fig, ax = plt.subplots(figsize=(4, 4))
        plotting.show_map(ax, m, image=x, alpha=0.55)
        ax.set_title(f"{args.method}: {clf.class_names[e.target]}", fontsize=9)
        atomic_write(out, lambda fh: fig.savefig(fh, format="png", bbox_inches="tight", dpi=120))
        plt.close(fig)
    print(f"{args.method} on {Path(args.image).name}: target {e.target} ({clf.class_names[e.target]}), "
          f"{e.n_forward} forward / {e.n_backward} backward passes, {e.seconds:.2f} s → {out}")
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from .study import read_tables

    res = read_tables(args.folder)
    out = Path(args.out) if args.out else Path(args.folder)
    out.mkdir(parents=True, exist_ok=True)
    from .files import atomic_write

    for name, df in res.tables().items():
        path = out / f"{name}.{args.format}"
        if args.format == "csv":
            text = df.to_csv(index=False)
            atomic_write(path, lambda fh, text=text: fh.write(text.encode("utf-8")))
        elif path.resolve() != (Path(args.folder) / f"{name}.parquet").resolve():
            atomic_write(path, lambda fh, df=df: df.to_parquet(fh, index=False))
    prov = res.provenance
    if prov:
        print(f"{prov.get('study')}: {prov.get('n_images')} images, model {prov.get('model', {}).get('name')} "
              f"(weights {prov.get('model', {}).get('weights_hash')}), commit {str(prov.get('commit'))[:10]}"
              f"{' (dirty)' if prov.get('dirty') else ''}, {prov.get('wall_seconds')} s wall")
    _print_summary(res.scores)
    print(f"tables → {out} ({args.format})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return {"study": _cmd_study, "explain": _cmd_explain, "results": _cmd_results}[args.command](args)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        print(f"saliency {args.command}: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
