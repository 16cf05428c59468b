r"""Shared body of the length-extrapolation configs (issue #5, kexue.fm/archives/9603 ... 9948).

Each pre-training-time variant is its own file in this folder (``rope.py``, ``rope_logn.py``, ``hwfa.py``,
``inv_leaky.py``, ``kna.py``, ``cosa.py``, ``hwfa2.py``); they all call :func:`make_config` here. The
inference-time methods (PI, NTK, YaRN, log-n dagger, ReRoPE, Leaky ReRoPE, windows) are not training configs:
``kexue_jax/evals/length_methods.py`` applies them to finished checkpoints (which ones:
``experiments/length_extrapolation/methods.py``).

Su's setup (https://kexue.fm/archives/9603, 9708): single-head attention, Post-Norm, causal LM, per-token accuracy, trained at
N = 512 and tested at 4096 (8x). Ours (``scale=default``): byte-level LM on the built-in Python-stdlib corpus,
N = L_train = 128, tested at 128/256/512/1024. ``scale=medium`` trains at Su's N = 512 on the same built-in
corpus (an 8-layer, 19M-parameter model, bf16 on an accelerator): the Colab TPU notebook's study, minutes on 8
TPU cores, nothing to download. ``scale=full`` is Su's scale (N = 512, a 24-layer GAU of ~90M
parameters, bf16, FSDP-sharded) for an accelerator, on a TFDS catalog text dataset prepared as array_record.

Arguments (comma-separated, big_vision style), shared by every file of the folder:
  scale=default|tiny|medium|full   model/data size (``runlocal`` = tiny: a few steps, for tests)
  steps=N                   training steps (0 = the scale's default)
  norm=post|pre             residual norm placement (default: the arch's, Su: post)
  heads=1                   attention heads (default: the arch's, Su: single head); head_dim is kept
  block=mha|gau             attention+FFN blocks or GAU blocks (Su: GAU; default mha, gau for full)
  logn                      (kna / qna / cosa only) add log-n pre-training
  seed=0                    training seed (the driver's --seeds trains rope / rope_logn replicates with 1, 2, ...)
  copy=0.0                  copy-augmented training: this fraction of the training windows is a prefix of
                            s ~ U{N/4..N/2} bytes tiled to N (data.repeat_frac), so that a small model learns
                            in-context copying within N; the repeated test set then asks whether copying
                            survives at distances >= N, never seen in training (Su's repeated column)
  copy_warmup=0             the first this many training steps see only tiled windows (a copy warm-up: on
                            pure copy data the baseline forms copying in < 750 steps: the study's copy_control run)
  copy_source=text          the tiled segment: "text" (the window's prefix) or "random" (printable random
                            bytes, which only copying predicts: a much stronger push towards induction heads)
  arch=su                   architecture preset, applied before norm/heads: "su" (post-norm RMSNorm, 1 head,
                            Su's GAU setting) or "prenorm4x2" (pre-norm LayerNorm, 2 heads of 64;
                            with scale=default's 4 layers and d = 128 that is the independent byte-LM
                            measurement whose log-n gains are 3-8x ours, issue #18); explicit norm=/heads= win
  eval=all                  evaluation protocol recorded in study.eval_protocol for the study driver: "all" =
                            per-token accuracy averaged over every position of each test window (Su's tables,
                            9603); "tail" = only the targets at positions >= N (where the test length exceeds
                            anything trained; log n-dagger leaves positions < N unchanged, so "all" dilutes its
                            gain by N / L); "last" = the last N targets with growing context (9948, eval_loss.py)
Per-variant arguments (accepted everywhere, used by one file): logn (kna/qna/cosa), nope (kna/qna: NoPE instead
of RoPE), b8 (inv_leaky: RoPE base x extension), w=/f= (hwfa2: window and number of full layers).
"""
import math

from kexue_jax import config_lib

# Model/data size per scale. default: ~0.43M parameters, 4 layers, 1200 steps of batch 16 (2.5M tokens): sized
# so that the seven default variants (+ 2 more seeds of rope and rope_logn) train and evaluate in about an hour
# on 2 CPU cores (measured: MLP 512 or batch 32 ran at under half the tokens/s of this size on the shared
# 2-core machine).
# Architecture presets (arch=...): defaults for norm / heads. The sizes of prenorm4x2 (4 layers, d = 128, heads of
# 64) are those of scale=default already; at other scales the preset sets only the norm and the heads.
ARCHS = {
    "su": dict(norm="post", heads=1),
    "prenorm4x2": dict(norm="pre", heads=2),
}
EVAL_PROTOCOLS = ("all", "tail", "last")
SCALES = {
    "tiny": dict(train_length=16, num_layers=2, embed_dim=32, head_dim=16, mlp_dim=64, batch_size=8,
                 steps=4, warmup=1),
    "default": dict(train_length=128, num_layers=4, embed_dim=128, head_dim=64, mlp_dim=256, batch_size=16,
                    steps=1200, warmup=60),
    "medium": dict(train_length=512, num_layers=8, embed_dim=512, head_dim=128, mlp_dim=2048, batch_size=64,
                   steps=4000, warmup=200),
    "full": dict(train_length=512, num_layers=24, embed_dim=768, head_dim=128, mlp_dim=1536, batch_size=256,
                 steps=30000, warmup=0),
}
# Test lengths are 1x, 2x, 4x, 8x the training length; PI/NTK/YaRN use the extension factor k = 8.
EXTENSION = 8


def parse(arg):
  a = config_lib.parse_arg(arg, runlocal=False, scale="default", steps=0, norm="", heads=0, arch="su",
                           block="auto", logn=False, copy=0.0, copy_source="text", copy_warmup=0, seed=0,
                           nope=False, b8=False, w=0, f=2, eval="all")
  if a.runlocal:
    a.scale = "tiny"
  if a.scale not in SCALES:
    raise ValueError(f"scale={a.scale!r}; use one of {sorted(SCALES)}.")
  if a.arch not in ARCHS:
    raise ValueError(f"arch={a.arch!r}; use one of {sorted(ARCHS)}.")
  preset = ARCHS[a.arch]
  a.norm = a.norm or preset["norm"]
  a.heads = a.heads or preset["heads"]
  if a.eval not in EVAL_PROTOCOLS:
    raise ValueError(f"eval={a.eval!r}; use one of {EVAL_PROTOCOLS}.")
  if a.norm not in ("pre", "post"):
    raise ValueError(f"norm={a.norm!r}; use pre or post.")
  if not 0.0 <= a.copy <= 1.0:
    raise ValueError(f"copy={a.copy} is a fraction of the training windows; use a value in [0, 1].")
  return a


def make_config(variant: str, arg=None, *, attention=None, layer_attention=None, extra_study=None):
  """The config of one pre-training variant.

  attention: dict of AttentionConfig fields (RoPE + causal are the defaults).
  layer_attention: callable (num_layers, train_length) -> list of per-layer override dicts (HWFA, HWFA2);
    train_length is a FieldReference to data.seq_len.
  """
  a = parse(arg)
  s = dict(SCALES[a.scale])
  n = s["train_length"]
  c = config_lib.base_config()
  c.seed = int(a.seed)
  c.num_train_steps = a.steps or s["steps"]
  c.batch_size = s["batch_size"]
  c.log_every_steps = max(1, min(50, c.num_train_steps))
  c.eval_every_steps = 0
  accelerator_scale = a.scale in ("medium", "full")
  c.checkpoint_every_steps = {"medium": 500, "full": 2000}.get(a.scale, 0)
  c.max_checkpoints_to_keep = 1
  c.num_eval_batches = 2 if a.scale == "tiny" else 8
  c.progress_bar = accelerator_scale  # the CPU study logs one line per variant instead

  c.data.seq_len = n
  # Everything derived from N follows `--config.data.seq_len=...` (lazy FieldReferences, resolved when the
  # model is built); overriding a derived key itself (e.g. logn_base_length) breaks only that link.
  n_ref = c.data.get_ref("seq_len")
  c.data.repeat_frac = float(a.copy)
  c.data.repeat_source = a.copy_source
  c.data.repeat_warmup = int(a.copy_warmup) * s["batch_size"]   # steps -> examples of the global stream
  if a.scale == "full":
    # Any TFDS catalog text dataset with long documents, prepared as array_record (nothing is downloaded).
    c.data.name = "pg19"
    c.data.text_key = "book_text"
    c.mesh.data, c.mesh.fsdp = 1, -1

  attn = dict(position="rope", causal=True, logn_base_length=n_ref.identity())
  if accelerator_scale:  # TPU splash / GPU cuDNN where the method is expressible, else XLA (one log line)
    attn["kernel"] = "auto"
  attn.update(attention or {})
  c.model = dict(
      name="transformer_lm", vocab_size=256, num_layers=s["num_layers"], embed_dim=s["embed_dim"],
      num_heads=a.heads, head_dim=s["head_dim"], mlp_dim=s["mlp_dim"], dropout_rate=0.0,
      norm=a.norm, block=a.block if a.block != "auto" else ("gau" if a.scale == "full" else "mha"),
      norm_type="rmsnorm" if a.norm == "post" else "layernorm",
      attention=attn,
      # medium: "auto" = bf16 compute on TPU/GPU, float32 on CPU (models.resolve_dtype).
      dtype={"full": "bfloat16", "medium": "auto"}.get(a.scale, "float32"), param_dtype="float32",
      remat=a.scale == "full")
  if c.model.block == "gau":
    c.model.gau_normalization = "softmax"  # the AttentionConfig's logn decides the scaling, as in Su's runs
  if layer_attention is not None:
    c.model.layer_attention = layer_attention(s["num_layers"], n_ref)

  c.optimizer.name = "adamw"
  c.optimizer.learning_rate = {"medium": 1e-3, "full": 5e-4}.get(a.scale, 2e-3)
  c.optimizer.b2 = 0.98
  c.optimizer.weight_decay = 0.01
  c.optimizer.warmup_steps = s["warmup"] if a.scale != "full" else 1000
  c.optimizer.schedule = "cosine"

  c.study = dict(variant=variant, scale=a.scale, train_length=n_ref.identity(), extension=EXTENSION,
                 test_lengths=[n_ref * m for m in (1, 2, 4, 8)], logn_pretrained=attn.get("logn") == "train",
                 copy_frac=float(a.copy), arch=a.arch, norm=a.norm, heads=a.heads,
                 eval_protocol=a.eval,
                 **(extra_study or {}))
  return c


def hwfa_window(num_layers: int, train_length):
  """Largest w with (w-1)(L-1)+1 <= 3/4 N (9603); nn.transformer.hwfa_window's rule at alpha = 3/4.

  In integers, floor((3N/4 - 1) / (L-1)) = (3N - 4) // (4(L-1)), so ``train_length`` may be a FieldReference
  (the window then follows ``data.seq_len``).
  """
  if num_layers < 2:
    return train_length
  return (train_length * 3 - 4) // (4 * (num_layers - 1)) + 1


def log2i(x):
  return int(round(math.log2(x)))


def qk_norm_config(kind: str, arg=None):
  """QNA / KNA (kexue.fm/archives/9859): ``qk_norm=kind`` with RoPE (``nope``: none) and log n (``logn``)."""
  a = parse(arg)
  name = kind + ("_nope" if a.nope else "") + ("_logn" if a.logn else "")
  return make_config(name, arg, attention=dict(
      qk_norm=kind, logn="train" if a.logn else "none", position="none" if a.nope else "rope"))
