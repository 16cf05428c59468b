r"""Su's first log-n table (kexue.fm/archives/8823, T1): a bidirectional MLM trained at n = 64, tested at 64..1024.

  Attention-O:  softmax(q_i . k_j / sqrt(d))                       (standard)
  Attention-E:  softmax(log_512(n) / sqrt(d) * q_i . k_j)           (entropy-invariant, `logn`)

with n = the number of keys a query attends over (the valid window length; attention.py's bidirectional log n).
Su fixed kappa so that Attention-E equals the standard scale at n = 512 (not at the training length), so at the
training length 64 the logits are 2/3 of the standard ones; `base=0` uses log_N n (N = data.seq_len) instead.
His model was RoFormer-small (MLM, Chinese); ours is the byte-level MLM encoder of configs/mlm_dropout
(RoPE, 3 layers, width 128) on the built-in corpus. Su's numbers (MLM accuracy, %):

  n              64     128    256    512    1024
  Attention-O  43.27  36.53  23.02  15.12  11.54
  Attention-E  43.11  41.17  34.04  20.15  13.58

  python -m kexue_jax.main --config configs/length_extrapolation/logn_mlm.py --workdir /tmp/le/mlm_o
  python -m kexue_jax.main --config configs/length_extrapolation/logn_mlm.py:logn --workdir /tmp/le/mlm_e

Arguments: runlocal, logn, base=512 (kappa's reference length; 0 = data.seq_len), steps=1200, batch=64,
seq_len=64, norm=pre|post, seed=0. The evaluation at the longer lengths (study.test_lengths, all derived from
data.seq_len) belongs to the study driver: the same checkpoint scored with data.seq_len = each test length.
"""
from kexue_jax import config_lib

mlm = config_lib.load_sibling(__file__, "../mlm_dropout/_common.py")
# Su's test lengths as multiples of the training length 64.
MULTS = (1, 2, 4, 8, 16)


def get_config(arg=None):
  a = config_lib.parse_arg(arg, runlocal=False, logn=False, base=512, steps=1200, batch=64, seq_len=64,
                           norm="pre", seed=0)
  if a.norm not in ("pre", "post"):
    raise ValueError(f"norm={a.norm!r}; use pre or post.")
  if a.base == 1 or a.base < 0:
    raise ValueError(f"base={a.base}: log-n reference length must be >= 2 (or 0 = data.seq_len).")
  c = config_lib.base_config()
  c.seed = a.seed
  c.num_train_steps = 4 if a.runlocal else a.steps
  c.batch_size = 16 if a.runlocal else a.batch
  c.log_every_steps = 2 if a.runlocal else 100
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 0
  c.max_checkpoints_to_keep = 1
  c.num_eval_batches = 2 if a.runlocal else 16
  c.progress_bar = False

  c.data.name = "python_stdlib_text"
  c.data.preprocess = "cls_windows"
  c.data.seq_len = 16 if a.runlocal else a.seq_len
  c.data.eval_split = "validation"
  n_ref = c.data.get_ref("seq_len")

  c.task = dict(name="mlm", mode="mlm", mask_rate=0.15, mask_frac=0.8, random_frac=0.1, decoder_layers=1,
                eval_seed=0)
  c.model = mlm.encoder("local" if a.runlocal else "small", dropout=0.0)
  c.model.norm = a.norm
  base = a.base or n_ref.identity()
  if a.logn:
    c.model.attention = dict(position="rope", causal=False, logn="train", logn_base_length=base)
  mlm.adamw(c, lr=1e-3, warmup=1 if a.runlocal else max(1, a.steps // 20))
  c.study = dict(variant="attention_e" if a.logn else "attention_o", train_length=n_ref.identity(),
                 test_lengths=[n_ref * m for m in MULTS], logn=bool(a.logn), logn_base=base,
                 published=dict(lengths=[64, 128, 256, 512, 1024],
                                attention_o=[43.27, 36.53, 23.02, 15.12, 11.54],
                                attention_e=[43.11, 41.17, 34.04, 20.15, 13.58]))
  return c
