"""rlgen: JAX-native offline-to-online RL with generative data augmentation."""

__version__ = "0.1.0"
