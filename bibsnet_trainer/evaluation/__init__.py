"""Scoring segmentations: metrics, evaluation of a model on labelled cases, comparison, Dice report."""
