"""Pure-functional Flax (linen) modules and functions: no configs, no meshes, only logical axis names.

positions.py (the RoPE family and its length-extrapolation variants), attention_config.py (AttentionConfig and
the shared ReRoPE rotations: the bottom of the attention modules), attention.py (one attention entry point),
fast_attention.py / pallas_rerope.py (kernels), rerope_blockwise.py (O(n·block) ReRoPE), transformer.py
(LM / encoder, per-layer attention, HWFA), gau.py (Su's gated attention unit), cnn.py / resnet.py / vit.py (vision), heads.py, layers.py.
"""
from kexue_jax.nn.attention import AttentionConfig
from kexue_jax.nn.attention import MultiHeadAttention
from kexue_jax.nn.attention import attend
from kexue_jax.nn.positions import RopeScaling
from kexue_jax.nn.positions import apply_rope
from kexue_jax.nn.positions import apply_rope_2d
from kexue_jax.nn.transformer import TransformerEncoder
from kexue_jax.nn.transformer import TransformerLM
from kexue_jax.nn.transformer import hwfa_attention
