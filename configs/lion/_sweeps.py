"""The Lion study's grids per scale (big_vision's get_hyper style): settings of configs/lion/byte_lm.py and
configs/lion/mnist1d.py, one run per setting and seed. experiments/lion/study.py turns them into runs and claims.

Per scale: LM steps at batch 16 (other batches: the same examples), sequence length, seeds of the headline
settings and of the λ sweep, batches, Amos α0s, lr / λ grids; ``emb``: the embedding-anomaly arm, its own longer
runs (Lion/Tiger lr and λ with lr·λ·steps >= 1.5 after the schedule, so that stale rows can travel toward ±1/λ:
kexue.fm/archives/9736), batch, steps, seeds; ``cls``: the MNIST-1D lr sweep (seeds, Lion and AdamW lr grids).
"""
LION_LRS, LION_WDS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2), (0.03, 0.1, 0.3, 1.0)
ADAMW_LRS, ADAMW_WDS = (3e-4, 1e-3, 3e-3, 1e-2), (0.003, 0.01, 0.03, 0.1)
CLS_LRS = {"lion": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "adamw": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2)}
# (peak lr, λ) where the other is swept: byte_lm.DEFAULTS, the automl README's transfer (lr / 3.3, λ x 10).
TRANSFER = {"lion": (3e-4, 0.3), "adamw": (1e-3, 0.03), "tiger": (3e-4, 0.3)}
AMOS_A0 = 3e-3   # the α0 of the Amos claims (all seeds): lr = α0/√128 ≈ 2.7e-4, Lion's transfer lr

SCALES = {
    "default": dict(steps=150, seq=64, seeds=3, wd_seeds=3, batches=(4, 16, 64), amos=(3e-3, 1e-2),
                    lion_lrs=LION_LRS, adamw_lrs=ADAMW_LRS, lion_wds=(0.03, 0.3, 3.0), adamw_wds=(0.003, 0.03, 0.3),
                    emb=dict(lr=3e-3, wd=1.0, batch=4, steps=1500, seeds=2), cls=dict(seeds=3, **CLS_LRS)),
    "full": dict(steps=2000, seq=128, seeds=5, wd_seeds=5, batches=(4, 8, 16, 32, 64, 128), amos=(3e-3, 1e-2, 3e-2),
                 lion_lrs=LION_LRS, adamw_lrs=ADAMW_LRS, lion_wds=LION_WDS, adamw_wds=ADAMW_WDS,
                 emb=dict(lr=1e-3, wd=1.0, batch=16, steps=4000, seeds=3), cls=dict(seeds=5, **CLS_LRS)),
    "tiny": dict(steps=4, seq=32, seeds=1, wd_seeds=1, batches=(16,), amos=(3e-3,), lion_lrs=(3e-4,),
                 adamw_lrs=(1e-3,), lion_wds=(0.3,), adamw_wds=(0.03,),
                 emb=dict(lr=3e-3, wd=1.0, batch=16, steps=4, seeds=1), cls=dict(seeds=1, lion=(1e-3,), adamw=(3e-3,))),
}


def run_arg(opt, lr=None, wd=None, batch=16, steps=150, seed=0, untied=False, fix="none", accum=1, amos=0.0,
            **_) -> str:
  """byte_lm.py's argument string of a setting (labels such as emb / task are not config arguments)."""
  parts = [f"opt={opt}"] + ([f"amos_alpha0={amos:g}"] if amos else [f"lr={lr:g}", f"wd={wd:g}"])
  parts += [f"batch={batch}", f"steps={steps}"] + ["untied"] * untied + [f"fix={fix}"] * (fix != "none")
  return ",".join(parts + [f"accum={accum}"] * (accum > 1) + [f"seed={seed}"])


def settings(scale: str) -> list[tuple[dict, int]]:
  """(setting, number of seeds) of every part of a scale; duplicates are merged by the study's plan()."""
  s, t, e = SCALES[scale], SCALES[scale]["steps"], SCALES[scale]["emb"]
  out = [(dict(opt=o, lr=lr, wd=TRANSFER[o][1], steps=t), s["seeds"]) for o in ("lion", "adamw")
         for lr in s[f"{o}_lrs"]]
  out += [(dict(opt=o, lr=TRANSFER[o][0], wd=wd, steps=t), s["wd_seeds"]) for o in ("lion", "adamw")
          for wd in s[f"{o}_wds"]]
  out += [(dict(opt=o, lr=TRANSFER[o][0], wd=TRANSFER[o][1], batch=b, steps=t * 16 // b), s["seeds"])
          for b in s["batches"] for o in ("lion", "adamw")]
  out += [(dict(opt="tiger", lr=3e-4, wd=0.3, steps=t), s["seeds"]),
          (dict(opt="tiger", lr=3e-4, wd=0.3, batch=4, accum=4, steps=4 * t), s["seeds"])]
  arms = [dict(opt=o, lr=e["lr"], wd=e["wd"], untied=True) for o in ("lion", "tiger")]
  arms += [dict(opt="adamw", lr=TRANSFER["adamw"][0], wd=TRANSFER["adamw"][1], untied=True)]
  arms += [dict(opt="lion", lr=e["lr"], wd=e["wd"], untied=True, fix=f) for f in ("lazy", "emb_adamw")]
  arms += [dict(opt="lion", lr=e["lr"], wd=e["wd"])]   # tied: Su's fix (b)
  out += [(dict(a, batch=e["batch"], steps=e["steps"], emb=True), e["seeds"]) for a in arms]
  out += [(dict(opt="lion", amos=a, steps=t), s["seeds"] if a == AMOS_A0 else 1) for a in s["amos"]]
  out += [(dict(task="mnist1d", opt=o, lr=lr, wd=TRANSFER[o][1]), s["cls"]["seeds"]) for o in ("lion", "adamw")
          for lr in s["cls"][o]]
  if scale == "tiny":  # the smoke test: one run of each kind of record
    out = [(kw, n) for kw, n in out if kw.get("accum", 1) == 1 and kw.get("fix", "none") == "none"
           and not (kw.get("emb") and (kw["opt"] == "tiger" or not kw.get("untied")))]
  return out


# Every byte-LM argument of the accelerator scale (tests/optim/test_lion_configs.py builds each).
ALL = {"full": [run_arg(**kw) for kw, _ in settings("full") if "task" not in kw]}
