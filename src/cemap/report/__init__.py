"""Figures and the self-contained HTML report. Nothing here computes a metric."""
