"""Each ported study's report generator on synthetic records (no training): verdicts, tables, plots, footer."""
import json
import os

import numpy as np

from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.lion import study as lion
from experiments.mlm_dropout import study as mlm
from experiments.rdrop import study as rdrop
from experiments.simsiam import study as simsiam


def _simsiam_record(variant, seed, probe, erank, std, loss=-0.9, d=64):
  curve = [dict(step=0, knn=0.70, probe=0.75 + 0.01 * seed, z_std=0.124, z_erank=40.0, h_std=0.05, h_erank=30.0),
           dict(step=100, knn=probe - 0.02, probe=probe, z_std=std, z_erank=erank, h_std=0.05, h_erank=20.0)]
  steps = list(range(10, 110, 10))
  return dict(name=f"{variant}{seed}", variant=variant, seed=seed, config="c", command=f"python -m x {variant}",
              proj_dim=d, steps=100, curve=curve, final=curve[-1], untrained=curve[0], train={"loss": loss},
              train_curves={"step": steps, "loss": [loss] * 10, "z_std": [std] * 10, "z_erank": [erank] * 10,
                            "grad_norm/encoder": [1.0] * 10,
                            "grad_norm/predictor": [2.0 + 0.1 * seed] + [0.5 + 0.01 * seed] * 9},
              train_time_s=10.0, eval_time_s=2.0, wall_time_s=12.0)


def simsiam_records(ss_probe=0.85, nosg_erank=1.1):
  out = []
  for s in range(3):
    e = 0.002 * s
    out += [_simsiam_record("simsiam", s, ss_probe + e, 30.0 + s, 0.121 + e / 10),
            _simsiam_record("no_stopgrad", s, 0.5 + e, nosg_erank + e, 0.08 + e, loss=-1.0),
            _simsiam_record("no_predictor", s, 0.45 + e, 1.05 + e, 0.09 + e, loss=-1.0),
            _simsiam_record("frozen_predictor", s, 0.72 + e, 20.0, 0.12, loss=-0.3 + e),
            _simsiam_record("constlr_predictor", s, ss_probe + 0.01 - e, 30.0, 0.12),
            _simsiam_record("mean_target", s, 0.6, 1.5, 0.1)]
  return out


def test_simsiam_claims_on_synthetic_records():
  good = C.judge_all(simsiam.claims(64, 0.33), simsiam.samples(simsiam_records()))
  assert {v.claim.id: v.verdict for v in good} == {v.claim.id: C.HOLDS for v in good}, [v.line() for v in good]
  bad = {v.claim.id: v.verdict for v in
         C.judge_all(simsiam.claims(64, 0.33), simsiam.samples(simsiam_records(nosg_erank=20.0)))}
  assert bad["1a"] == C.FAILS and bad["2a"] == C.HOLDS


def test_simsiam_report_from_a_results_file(tmp_path):
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"runs": simsiam_records(), "baselines": {"raw": {"knn": 0.5, "probe": 0.33}}}))
  out = tmp_path / "out"
  assert launcher.main(["simsiam", "--report_only", "--results", str(path), "--out", str(out)]) == 0
  text = (out / "REPORT.md").read_text()
  for s in ("✅ holds", "67.7", "Verdict rules", "fig_curves.png", "Provenance", "95% CI"):
    assert s in text, s
  assert "$" not in text.replace("$$", "")  # every template field filled
  assert os.path.exists(out / "fig_curves.png")
  res = json.loads((out / "results.json").read_text())
  assert res["meta"]["legacy"] and res["extras"]["raw"]["probe"] == 0.33


# ------------------------------------------------------------------------------------------------ R-Drop.


def rdrop_records(acc_rdrop, kl_rdrop, semi_acc, seeds=5, std=0.002):
  rng = np.random.default_rng(0)
  out = []

  def add(model, alpha, dropout, n=1000, labelled=0, unlabelled=False, acc=0.5, kl=0.1, ce=0.5):
    for s in range(seeds):
      e = rng.normal(size=3) * std
      out.append(dict(model=model, alpha=alpha, dropout=dropout, train_size=labelled or n, labelled=labelled,
                      unlabelled=unlabelled, seed=s, wall_time_s=10.0, command="python -m ...", name=f"r{len(out)}",
                      eval=dict(accuracy=acc + e[0], consistency_kl=kl + e[1] / 10, consistency_disagree=0.05),
                      train=dict(ce=ce + e[2], accuracy=0.9)))
  for p in (0.1, 0.3):
    add("mlp", 0.0, p, acc=0.50, kl=0.10)
    add("mlp", 4.0, p, acc=acc_rdrop + (0.02 if p == 0.3 else 0.0), kl=kl_rdrop)
  add("mlp", 64.0, 0.3, acc=0.40, kl=0.001, ce=1.5)
  add("mlp", 0.0, 0.3, labelled=40, acc=0.25)
  add("mlp", 4.0, 0.3, labelled=40, acc=0.26)
  add("mlp", 0.0, 0.3, labelled=40, unlabelled=True, acc=semi_acc)
  return out


def _rdrop_verdicts(records):
  data = rdrop.samples(records)
  return {v.claim.id.split()[0] + ("" if len(v.claim.id.split()) < 3 else " " + v.claim.id.split()[-1]): v.verdict
          for v in C.judge_all(rdrop.claims(data), data)}


def test_rdrop_claims_on_synthetic_records():
  good = _rdrop_verdicts(rdrop_records(0.53, 0.02, 0.30))
  assert set(good.values()) == {C.HOLDS}, good
  bad = _rdrop_verdicts(rdrop_records(0.45, 0.2, 0.20))
  assert bad["1"] == bad["4"] == bad["2 α4"] == C.FAILS
  # Within noise and 3 seeds: the accuracy claim cannot be decided either way.
  noisy = _rdrop_verdicts(rdrop_records(0.5, 0.02, 0.255, seeds=3, std=0.05))
  assert noisy["2 α4"] == C.INCONCLUSIVE


def test_rdrop_report_and_a_diverged_run(tmp_path):
  recs = rdrop_records(0.53, 0.02, 0.30)
  recs.append({**recs[0], "seed": 99, "name": "diverged", "eval": {}, "train": {}, "error": "Non-finite loss"})
  path = tmp_path / "results.json"
  path.write_text(json.dumps(recs))   # the former driver's format: a bare list of records
  assert launcher.main(["rdrop", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 0
  text = (tmp_path / "o" / "REPORT.md").read_text()
  for s in ("✅ holds", "62.69", "`diverged`: Non-finite loss", "fig_supervised.png", "non-inferiority margin 0.5"):
    assert s in text, s


def test_rdrop_plan_and_configs():
  runs = rdrop.plan()
  assert len({r.name for r in runs}) == len(runs) == 95 and sum(r.labels["model"] == "cnn" for r in runs) == 20
  assert len(rdrop.plan(scale="full_grid")) == 115 and len(rdrop.plan(scale="cnn_6000")) == 6
  semi = [r for r in runs if r.labels["labelled"]]
  assert {r.labels["labelled"] for r in semi} == {40, 200} and len(semi) == 30
  c = launcher.load_run_config(semi[-1], ())
  assert c.data.preprocess == "classification_semi" and c.data.num_labelled == 200
  assert c.task.rdrop_alpha == 0 and c.task.unlabelled_alpha == 4 and c.task.passes == "duplicate"
  c = launcher.load_run_config(next(r for r in runs if r.labels["seed"] == 2 and r.labels["alpha"] == 0), ())
  assert c.task.passes == "single" and c.seed == 2 and c.data.train_split == "train[:1000]"
  assert sum(r.est_s for r in runs) <= 30 * 60


# ------------------------------------------------------------------------------------------- MLM / MAE.


def mlm_results(seeds=3):
  """The former driver's results.json layout, with runs from mlm_dropout.plan()."""
  rng = np.random.default_rng(0)
  records = []
  for r in mlm.plan(seeds):
    if r.labels["kind"] == "finetune":
      acc = {"mlm": 0.6, "mae": 0.605, "none": 0.4}[r.labels["init"]] - (0.1 if r.labels["drop"] == 0.5 else 0.0)
      records.append(dict(r.labels, name=r.name, eval={"accuracy": acc + 0.002 * rng.normal(), "loss": 1.0 - acc},
                          wall_time_s=30.0, steps_per_sec=5.0, command="python -m ..."))
  pre = {m: {"mode": m, "eval": {"accuracy": 0.3, "loss": 2.5}, "wall_time_s": 100.0, "step": 600, "name": m,
             "command": "python -m ..."} for m in ("mlm", "mae")}
  timing = {"droptoken": {str(p): 0.1 * (1 - p) + 0.01 for p in mlm.DROPS},
            "pretrain": {"mlm": 0.2, "mae": 0.21, "mae@0.75": 0.1, "mlm@0.75": 0.2}}
  drift = {"cos_dist_corrected_vs_plain": 0.01, "cos_dist_mc_vs_plain": 0.05, "cos_dist_mc_vs_corrected": 0.04,
           "kl_mc_vs_plain": 0.2, "kl_mc_vs_corrected": 0.18, "acc_unmasked_plain": 0.9,
           "acc_unmasked_corrected": 0.89, "mc_draws": 8}
  return {"finetune": records, "pretrain": pre, "timing": timing, "drift": drift, "classes": ["a", "b"],
          "eval_counts": [64, 64], "setup": {"pretrain_steps": 600, "finetune_steps": 150, "pool": "mean"}}


def test_mlm_claims_and_report_from_the_former_layout(tmp_path):
  res = mlm_results()
  records, extras = mlm.from_results(res)
  data = mlm.samples(records, extras["timing"])
  verdicts = {v.claim.id: v.verdict for v in C.judge_all(mlm.claims(), data)}
  assert verdicts["3"] == verdicts["4"] == verdicts["6a"] == verdicts["5"] == C.HOLDS, verdicts
  assert verdicts["1"] == C.HOLDS   # correction: same accuracy within ±1 point
  path = tmp_path / "results.json"
  path.write_text(json.dumps(res))
  assert launcher.main(["mlm_dropout", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 0
  text = (tmp_path / "o" / "REPORT.md").read_text()
  for s in ("Claim checklist", "DropToken", "60.06", "MAE-style is cheaper", "fig_mlm.png", "Provenance"):
    assert s in text, s


def test_mlm_plan_stages_and_workdir():
  runs = mlm.plan()
  assert len(runs) == 26 and {r.stage for r in runs[:2]} == {0} and {r.stage for r in runs[2:]} == {1}
  c = launcher.load_run_config(runs[2], (), "/w")
  assert c.init_from.workdir == "/w/runs/pretrain_mlm"
  assert len(mlm.plan(scale="tiny")) == 4


# ------------------------------------------------------------------------------------------------ Lion.


def lion_records(gap_small=0.05, tiger_delta=0.005, noise=0.003):
  """Records of lion.plan() with a loss surface whose optima sit where the claims say (AdamW's best lr 6.7x
  Lion's), the batch gap closing, and rare bytes' rows drifting under untied Lion/Tiger only."""
  rng = np.random.default_rng(0)
  counts = np.zeros(256, np.int64)
  counts[65:91], counts[128:160] = 380_000, 300   # frequent letters; rare bytes (~5 expected occurrences)
  out = []
  for run in lion.plan():
    r = dict(run.labels, name=run.name, command="python -m ...", wall_time_s=30.0)
    o, b = r["opt"], r["batch"]
    lr, wd = lion.amos_hp(r["amos"]) if r["amos"] else (r["lr"], r["wd"])
    best = {"lion": (3e-4, 0.3), "adamw": (2e-3, 0.05), "tiger": (3e-4, 0.3)}[o]
    loss = 2.5 + 0.1 * np.log10(lr / best[0]) ** 2 + 0.02 * np.log10(wd / best[1]) ** 2
    loss += tiger_delta * (o == "tiger") + (gap_small * np.log2(16 / b) / 2 if o == "lion" else 0.0)
    r.update(lr=lr, wd=wd, tokens=r["steps"] * b * 64, eval={"loss": loss + noise * rng.normal()},
             curve={"step": [8, 16], "loss": [3.0, loss]}, param_bytes=460_032 * 4,
             state_bytes=460_032 * 4 * (2 if o == "adamw" else 1) + 8)
    if r["emb"]:
      stale = r["untied"] and r["fix"] == "none" and o != "adamw"
      mean = 0.08 + 0.002 * rng.normal(size=256)
      mean[128:160] += 0.04 if stale else -0.005
      r["embedding"] = [{"step": r["steps"], "mean": mean.tolist(), "max": (3 * mean).tolist()}]
    out.append(r)
  return out, {"byte_counts": counts.tolist()}


def test_lion_claims_on_synthetic_records():
  records, extras = lion_records()
  data = lion.samples(records, extras["byte_counts"])
  v = {x.claim.id: x.verdict for x in C.judge_all(lion.claims(), data)}
  assert all(v[k] == C.HOLDS for k in ("1a", "1c", "2a", "2b", "3a", "3b", "4a", "4b", "4c", "4d", "4e", "4f")), v
  assert v["1b"] == C.INCONCLUSIVE   # one seed of the λ sweep at the default scale: below the minimum n
  bad_records, _ = lion_records(gap_small=-0.05, tiger_delta=0.2)
  bad = {x.claim.id: x.verdict for x in C.judge_all(lion.claims(), lion.samples(bad_records, extras["byte_counts"]))}
  assert bad["2a"] == bad["2b"] == bad["3a"] == C.FAILS


def test_lion_report_and_plan(tmp_path):
  records, extras = lion_records()
  records.append({**records[0], "seed": 9, "name": "diverged", "eval": {}, "error": "Non-finite loss"})
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"runs": records, "extras": extras}))
  assert launcher.main(["lion", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 0
  text = (tmp_path / "o" / "REPORT.md").read_text()
  for s in ("✅ holds", "➖ inconclusive", "`diverged`: Non-finite loss", "fig_lion.png", "77.9", "Provenance",
            "one parameter-sized buffer"):
    assert s in text, s
  assert "$" not in text and (tmp_path / "o" / "fig_lion.png").exists()
  runs = lion.plan()
  assert len({r.name for r in runs}) == len(runs) and sum(r.est_s for r in runs) <= 30 * 60
  c = launcher.load_run_config(next(r for r in runs if r.labels["fix"] == "emb_adamw"), ())
  assert c.data.seq_len == 64 and not c.model.tie_embedding and c.optimizer.param_groups[0]["name"] == "adamw"
