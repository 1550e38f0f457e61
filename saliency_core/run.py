"""``python -m saliency_core.run``: the book runner (:mod:`saliency_core.book.runner`)."""

from .book.runner import main

if __name__ == "__main__":
    raise SystemExit(main())
