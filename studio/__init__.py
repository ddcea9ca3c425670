"""Greedy Growing Studio: pixel-space text-to-image diffusion grown greedily from a low-resolution core."""

__version__ = "0.1.0"
