"""Metrics as plain functions of arrays: classification, localisation, faithfulness, robustness, sanity, detection."""
