"""Ships the repository's configs/ inside the package as kexue_jax.configs, so that an installed
`kexue --config lm/tiny` finds them from any directory (kexue_jax.config_lib.resolve_config_path).
Everything else is in setup.cfg."""
import setuptools

_CONFIG_GROUPS = setuptools.find_namespace_packages(where="configs", exclude=["*__pycache__*"])
setuptools.setup(
    packages=setuptools.find_packages(include=["kexue_jax", "kexue_jax.*"])
    + ["kexue_jax.configs"] + [f"kexue_jax.configs.{g}" for g in _CONFIG_GROUPS],
    package_dir={"kexue_jax.configs": "configs"},
)
