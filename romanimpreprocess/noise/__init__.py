"""Noise realisations (legacy NOISE layers)."""
