"""Easel's embedded default model: a tiny Stable Diffusion trained by our own code on drawn shapes."""
