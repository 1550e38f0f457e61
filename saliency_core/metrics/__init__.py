"""Evaluation protocols. Metrics never import methods; they consume Explanations and a Classifier."""
