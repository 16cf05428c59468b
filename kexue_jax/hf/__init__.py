"""Hugging Face-format LLaMA / Mistral / Qwen2 checkpoints in our own Flax modules, and back.

    from kexue_jax import hf
    model, params = hf.load_pretrained(path, mesh=None, dtype=None, rope_scaling=None)
    logits_BLV = model.apply({"params": params}, tokens_BL)      # float32
    hf.save_pretrained(path, model, params)
    python -m kexue_jax.hf inspect PATH

The loaded model is our `TransformerLM` (attention.py's one entry point, blockwise kernels, KV cache), so
every length-extrapolation method applies by config: HF rope_scaling types (rope.py) and Su's methods via
`rope_scaling=RopeScaling(...)` / `attention={...}` overrides (config.model_config).
Needs `safetensors` (writing) and `tokenizers` (tokenizer.json): pip install 'kexue_jax[hf]'.
"""
from kexue_jax.hf.api import export_run
from kexue_jax.hf.api import load_config
from kexue_jax.hf.api import load_pretrained
from kexue_jax.hf.api import load_tokenizer
from kexue_jax.hf.api import save_pretrained
from kexue_jax.hf.errors import CheckpointFormatError
