"""``python -m saliency_core``: the ``saliency`` command line (:mod:`saliency_core.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
