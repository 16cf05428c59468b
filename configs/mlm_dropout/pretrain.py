r"""MLM / MAE-style pre-training of a small byte-level encoder on the built-in Python-stdlib corpus (issue #8).

  python -m kexue_jax.main --config configs/mlm_dropout/pretrain.py --workdir /tmp/kexue/mlm_pretrain
  python -m kexue_jax.main --config configs/mlm_dropout/pretrain.py:mode=mae --workdir /tmp/kexue/mae_pretrain
  python -m kexue_jax.main --config configs/mlm_dropout/pretrain.py:runlocal --workdir /tmp/kexue/mlm_local

Tokens: [CLS] + 63 bytes (`cls_windows` over the `train` split; evaluation on `validation`). mode=mlm: BERT's
15% with 80/10/10 and the loss on the selected bytes; mode=mae: 15% of the bytes dropped from the encoder, a
1-layer decoder with a mask vector predicts them (kexue_jax/tasks/mlm.py). Encoder: 3 layers, width 128, RoPE.

Arguments: runlocal, mode=mlm|mae, steps=1200, rate=0.15 (mask / drop rate; Su's higher-rate extension: 0.4-0.5,
then fine-tune with finetune.py:correction=<the same rate>), batch=64, decoder_layers=1, dropout=0.0 (short runs on
plenty of data: no dropout), lr=1e-3, seq_len=64, seed=0, eval_draws=4 (independent mask draws per evaluation
window, averaged; each window's masks depend on its index in the evaluation set, not on its batch), holdout=0.0
(h > 0: leave out of the corpus the files that finetune.py:holdout=h tests on).
Sizes are cut to fit the default study into ~45 min of a 2-core CPU (the plan suggested 4 layers, L = 128,
1500-3000 steps). 1200 steps, not the first study's 600: at 600 the fine-tuned MLM encoder did not beat training
from scratch (experiments/mlm_dropout/followup_600_steps).
"""
from kexue_jax import config_lib


def get_config(arg=None):
  arg = config_lib.parse_arg(arg, runlocal=False, mode="mlm", steps=1200, rate=0.15, batch=64, decoder_layers=1,
                             dropout=0.0, lr=1e-3, seq_len=64, seed=0, eval_draws=4, holdout=0.0)
  common = config_lib.load_sibling(__file__, "_common.py")
  c = config_lib.base_config()
  c.seed = arg.seed
  c.num_train_steps = 4 if arg.runlocal else arg.steps
  c.batch_size = 16 if arg.runlocal else arg.batch
  c.log_every_steps = 2 if arg.runlocal else 100
  c.eval_every_steps = 0
  c.checkpoint_every_steps = 0
  c.max_checkpoints_to_keep = 1
  c.num_eval_batches = 2 if arg.runlocal else 16
  c.progress_bar = not arg.runlocal

  c.data.name = "python_stdlib_text"
  c.data.preprocess = "cls_windows"
  c.data.seq_len = 32 if arg.runlocal else arg.seq_len
  c.data.eval_split = "validation"
  if arg.holdout:
    c.data.holdout_classes = common.CLASSES
    c.data.holdout_frac = arg.holdout

  c.task = dict(name="mlm", mode=arg.mode, mask_rate=arg.rate, mask_frac=0.8, random_frac=0.1,
                decoder_layers=arg.decoder_layers, eval_seed=0, eval_draws=arg.eval_draws)
  c.model = common.encoder("local" if arg.runlocal else "small", dropout=arg.dropout)
  common.adamw(c, lr=arg.lr, warmup=1 if arg.runlocal else max(1, arg.steps // 20))
  c.study = dict(arg=arg.to_dict())
  return c
