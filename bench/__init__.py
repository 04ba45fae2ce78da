"""Kassasync benchmarks: ``python -m bench`` runs them all and writes bench/results/latest.json.

Every figure is a ratio against a baseline measured in the same run (the machine is shared and
noisy), or a count that does not depend on speed (HTTP calls), or a time over a physical bound.
"""
