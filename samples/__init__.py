"""Runnable samples: ``python -m samples.cart``."""
