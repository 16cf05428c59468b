"""kexue_jax: ideas from Su Jianlin's Scientific Spaces (kexue.fm) as JAX/Flax experiments."""

__version__ = "0.1.0"
