"""Claims ledger: each chapter states the paper's claims next to its own measured numbers and a verdict.

A notebook calls :func:`claims` with rows computed from its results; the rows are shown as a table and written
(atomically) to ``_build/results/<profile>/<notebook>.claims.json``. The book's front matter ("Which claims
reproduced") is generated from those files by :func:`saliency_core.frontmatter` at build time, so every verdict in
the book comes from a run of the code, never from hand-written text.

A verdict is decided by an explicit, printed criterion on measured numbers:

* ``"reproduced"`` — the criterion holds;
* ``"partly"`` — it holds in direction but not in size, or on some images / settings only;
* ``"not reproduced"`` — it fails;
* ``"not tested"`` — the run cannot test it (e.g. the dataset is not supplied); say why in ``ours``.
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from . import repo_root

__all__ = ["VERDICTS", "MIN_IMAGES", "Claim", "claims", "verdict", "results_dir", "load_claims"]

VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")
PROFILES = ("smoke", "book", "paper")


#: fewer images than this and a criterion's outcome is shown as indicative, never as a verdict
MIN_IMAGES = 20


@dataclass(frozen=True)
class Claim:
    """One claim: the paper's statement, the paper's number (if any), ours, the criterion and the verdict.

    ``ours`` / ``verdict`` / ``n`` come from the evidence release (``results/release/``, N images) when the chapter
    has one, and the verdict is ``"not tested"`` when N < :data:`MIN_IMAGES`; ``live`` / ``live_verdict`` /
    ``live_n`` are the same criterion on the chapter's own run (its profile's photos). A live outcome on fewer than
    :data:`MIN_IMAGES` images is indicative only (the claims page says so). Every text field is a str (an integer
    is written with ``str``, a float with ``format(v, ".4g")``; ``None`` for ``paper``/``ours``/``live`` → ``""``);
    ``n`` / ``live_n`` are ints or None.
    """

    claim: str
    paper: str
    ours: str
    criterion: str
    verdict: str
    n: int | None = None
    live: str = ""
    live_verdict: str = ""
    live_n: int | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict={self.verdict!r} is not valid; accepted values: {', '.join(VERDICTS)}")
        if self.live_verdict not in ("", *VERDICTS):
            raise ValueError(f"live_verdict={self.live_verdict!r} is not valid; accepted values: '', "
                             f"{', '.join(VERDICTS)}")
        for name in ("n", "live_n"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 0):
                raise ValueError(f"{name}={v!r} is not valid; accepted values: None or an int >= 0")
            if v is not None:
                object.__setattr__(self, name, int(v))
        if self.n is not None and self.n < MIN_IMAGES and self.verdict not in ("not tested",):
            raise ValueError(f"verdict={self.verdict!r} on n={self.n} images is not valid; accepted values: "
                             f"'not tested' below {MIN_IMAGES} images (put the outcome in 'ours')")
        for f in fields(self):
            if f.name in ("n", "live_n"):
                continue
            value = getattr(self, f.name)
            if value is None and f.name in ("paper", "ours", "live"):
                object.__setattr__(self, f.name, "")
            elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
                object.__setattr__(self, f.name, str(int(value)))
            elif isinstance(value, numbers.Real) and not isinstance(value, bool):
                object.__setattr__(self, f.name, format(float(value), ".4g"))
            elif not isinstance(value, str):
                raise ValueError(f"{f.name}={value!r} is not valid; accepted values: a str (numbers are written "
                                 "with 4 significant digits; format them in the notebook for other precisions)")
        if not self.claim.strip():
            raise ValueError("claim='' is not valid; accepted values: a non-empty str")

    @property
    def live_indicative(self) -> bool:
        """The live outcome rests on fewer than :data:`MIN_IMAGES` images (or an unknown number)."""
        return self.live_n is None or self.live_n < MIN_IMAGES

    @classmethod
    def from_dict(cls, row: dict) -> Claim:
        """Build a claim from a dict with the fields ``claim, paper, ours, criterion, verdict`` and optionally
        ``n, live, live_verdict, live_n``."""
        names = [f.name for f in fields(cls)]
        required = names[:5]
        if not isinstance(row, dict) or not set(required) <= set(row) or not set(row) <= set(names):
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            raise ValueError(f"claim row {got} is not valid; accepted values: a Claim or a dict with keys "
                             f"{', '.join(required)} (and optionally {', '.join(names[5:])})")
        return cls(**row)


def verdict(holds: bool, partly: bool = False) -> str:
    """``"reproduced"`` if ``holds``, else ``"partly"`` if ``partly``, else ``"not reproduced"``."""
    return "reproduced" if holds else ("partly" if partly else "not reproduced")


def results_dir(profile: str) -> Path:
    """``$SALIENCY_RESULTS_DIR/<profile>`` (default ``<repo>/_build/results/<profile>``, or under the current
    folder outside a repository)."""
    env = os.environ.get("SALIENCY_RESULTS_DIR")
    base = Path(env) if env else (repo_root(strict=False) or Path.cwd()) / "_build" / "results"
    return base / profile


def check_profile(profile: str) -> None:
    """One-line error unless ``profile`` is one of :data:`PROFILES`."""
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not valid; accepted values: {', '.join(PROFILES)}")


def claims(rows: list[Claim | dict], *, notebook: str, profile: str, model: str = "", n_images: int | None = None,
           write: bool = True) -> pd.DataFrame:
    """Validate ``rows``, write them to ``results_dir(profile)/<notebook>.claims.json`` and return a table.

    The file records the notebook, profile, model and number of images so that the summary page can say under
    which budget each verdict was reached.

    Parameters
    ----------
    rows : list of Claim or dict
        One entry per claim; a dict needs exactly the keys ``claim, paper, ours, criterion, verdict`` (str).
    notebook : str
        The chapter's notebook stem (``"03_leg"``): names the file and the link on the summary page.
    profile : str
        ``"smoke"``, ``"book"`` or ``"paper"``: the profile the notebook was executed with.
    model, n_images
        What produced the numbers, recorded for the summary page.
    write : bool
        Write the file (atomically: temporary file in the same folder + ``os.replace``).

    Returns
    -------
    pandas.DataFrame
        Columns ``claim, paper, ours, verdict, criterion``.
    """
    check_profile(profile)
    if not notebook or Path(notebook).name != notebook or notebook.startswith("."):
        raise ValueError(f"notebook={notebook!r} is not valid; accepted values: a notebook stem such as '03_leg'")
    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 0):
        raise ValueError(f"n_images={n_images!r} is not valid; accepted values: None or an int >= 0")
    items = [r if isinstance(r, Claim) else Claim.from_dict(r) for r in rows]
    if not items:
        raise ValueError("rows=[] is not valid; accepted values: a non-empty list of Claim or dict")
    if write:
        out = results_dir(profile) / f"{notebook}.claims.json"
        payload = {"notebook": notebook, "profile": profile, "model": model, "n_images": n_images,
                   "claims": [asdict(c) for c in items]}
        atomic_write_text(out, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    table = pd.DataFrame([asdict(c) for c in items])
    cols = ["claim", "paper", "ours", "verdict", "criterion"]
    if any(c.n is not None or c.live or c.live_verdict for c in items):
        cols = ["claim", "paper", "n", "ours", "verdict", "live", "live_verdict", "criterion"]
    return table[cols]


def load_claims(profile: str, base: Path | None = None) -> list[dict]:
    """Every ``*.claims.json`` of one profile, validated, sorted by notebook.

    Parameters
    ----------
    profile : str
        ``"smoke"``, ``"book"`` or ``"paper"``.
    base : Path, optional
        Folder holding one sub-folder per profile; default :func:`results_dir`'s
        (``$SALIENCY_RESULTS_DIR`` or ``<repo>/_build/results``).

    Returns
    -------
    list of dict
        The files' payloads (``notebook, profile, model, n_images, claims``), sorted by notebook; ``[]`` when
        the folder does not exist. A file that is not valid JSON or whose claims are not valid raises a
        ``ValueError`` naming the file: the summary page never shows a verdict it cannot trust.
    """
    check_profile(profile)
    d = results_dir(profile) if base is None else Path(base) / profile
    if not d.is_dir():
        return []
    out = []
    for p in sorted(d.glob("*.claims.json")):
        try:
            payload = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(payload, dict) or not isinstance(payload.get("claims"), list) or not payload["claims"]:
                raise ValueError("no non-empty 'claims' list")
            payload["claims"] = [asdict(Claim.from_dict(c)) for c in payload["claims"]]
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{p} is not a valid claims file ({exc}); accepted values: a file written by "
                             "saliency_core.report.claims") from None
        payload.setdefault("notebook", p.name[: -len(".claims.json")])
        if payload.get("profile", profile) != profile:
            raise ValueError(f"{p}: profile={payload['profile']!r} is not valid in the {profile!r} folder; "
                             f"accepted values: {profile!r}")
        payload["profile"] = profile
        out.append(payload)
    return sorted(out, key=lambda c: c["notebook"])
