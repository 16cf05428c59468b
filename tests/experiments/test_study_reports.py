"""Each ported study's report generator on synthetic records (no training): verdicts, tables, plots, footer."""
import json
import os

import numpy as np

from experiments.framework import claims as C
from experiments.framework import launcher
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


def mlm_results(n_files=16, per_file=4):
  """A launcher results.json for mlm_dropout's full plan: synthetic accuracies with known effects (points: MAE
  +0.5, p = 0.5 -10, from scratch -20, the correction +0 at r = 0.15 and +3 at r = 0.4), each run's 0/1 outcomes
  on n_files x per_file test windows, MLM drift with a positive KL gain on every file."""
  rng = np.random.default_rng(0)
  n = n_files * per_file
  records = []
  for r in mlm.plan(scale="full"):
    lab = r.labels
    if lab["kind"] == "pretrain":
      drift = {"cos_dist_corrected_vs_plain": 0.01, "cos_dist_mc_vs_plain": 0.05, "cos_dist_mc_vs_corrected": 0.04,
               "kl_mc_vs_plain": 0.2, "kl_mc_vs_corrected": 0.18, "acc_unmasked_plain": 0.9,
               "acc_unmasked_corrected": 0.89, "kl_gain": 0.02, "kl_gain_se": 0.002, "num_files": n_files,
               "kl_gain_by_file": {str(f): 0.02 + 0.002 * rng.normal() for f in range(n_files)}}
      records.append(dict(lab, name=r.name, eval={"accuracy": 0.3, "loss": 2.5}, wall_time_s=100.0, step=1200,
                          **({"drift": drift} if lab["mode"] == "mlm" else {})))
      continue
    acc = {"mlm": 0.6, "mae": 0.605, "none": 0.4}[lab["init"]] - (0.1 if lab["drop"] == 0.5 else 0.0)
    acc += 0.03 * (lab["correction"] == 0.4) + 0.002 * rng.normal()
    correct = "".join("01"[int(x)] for x in rng.random(n) < acc)
    records.append(dict(lab, name=r.name, eval={"accuracy": acc, "loss": 1.0 - acc}, correct=correct,
                        wall_time_s=30.0, steps_per_sec=5.0, command="python -m ..."))
  extras = {"timing": {"droptoken": {str(p): 0.1 * (1 - p) + 0.01 for p in mlm.DROPS},
                       "pretrain": {"mlm": 0.2, "mae": 0.21, "mae@0.75": 0.1, "mlm@0.75": 0.2}},
            "classes": ["a", "b"], "eval_counts": [n // 2, n // 2], "eval_files": np.repeat(np.arange(n_files),
                                                                                          per_file).tolist(),
            "identity": mlm.measure.mask_identity(), "setup": {"pretrain_steps": 1200, "finetune_steps": 150,
                                                               "pool": "mean", "eval_per_file": per_file}}
  return {"study": "mlm_dropout", "runs": records, "extras": extras, "meta": {"trained_on": "synthetic"}}


def test_mlm_claims_and_report_on_synthetic_records(tmp_path):
  res = mlm_results()
  data = mlm.samples(res["runs"], res["extras"])
  assert len(data[f"acc:{mlm.key('mlm', 0.15, 0, 0)}"]) == 10                      # 2 pre-training x 5 seeds
  assert set(data[f"acc@f:{mlm.key('mlm', 0.15, 0, 0)}"]) == {f"f{f}" for f in range(5)}
  verdicts = {v.claim.id: v.verdict for v in C.judge_all(mlm.claims(), data)}
  assert all(verdicts[i] == C.HOLDS for i in ("1", "1b", "2 p0.1", "2 p0.15", "3", "4", "5", "6a", "6b", "7")), verdicts
  assert mlm.identity_verdict(res["extras"]["identity"]).verdict == C.HOLDS
  path = tmp_path / "results.json"
  path.write_text(json.dumps(res))
  assert launcher.main(["mlm_dropout", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 0
  text = (tmp_path / "o" / "REPORT.md").read_text()
  for s in ("Claim checklist", "DropToken", "60.", "MAE-style is cheaper", "fig_mlm.png", "Provenance",
            "pre-training seed", "seeds × files", "pairs for ±1 pt", "reached a ±1 point",
            "64 windows from 16 files"):
    assert s in text, s
  row = next(l for l in text.splitlines() if l.startswith("| 1 | 10 |"))   # claim 1: 10 seed pairs
  boot = float(row.split("|")[7].strip().lstrip("±"))
  assert 0 < boot < 100   # the seeds x files bootstrap CI half-width, in points


def test_mlm_pairs_needed_for_a_one_point_ci():
  # t(0.975, 6) / sqrt(7) = 0.925 <= 1 < t(0.975, 5) / sqrt(6) = 1.050 (scipy.stats.t, tabulated values)
  assert mlm.pairs_needed(0.01) == 7
  assert mlm.pairs_needed(0.008) == 5   # 2.776 * 0.8 / sqrt(5) = 0.993; 3.182 * 0.8 / 2 = 1.273


def test_mlm_mask_identity_is_exact():
  ident = mlm.measure.mask_identity(n=6, kept=3)
  assert ident["bernoulli_masks"] == 64 and ident["subsets"] == 20 and ident["p"] == 0.5
  assert max(ident["max_dev_bernoulli"], ident["max_dev_subsets"], ident["max_dev_norm"]) < 1e-14


def test_mlm_plan_pairs_stages_and_budget():
  for scale, n_pt, n_ft in (("default", 2, 4), ("full", 2, 5)):
    runs = mlm.plan(scale=scale)
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    pre = [r for r in runs if r.labels["kind"] == "pretrain"]
    assert runs[:len(pre)] == pre and {r.stage for r in pre} == {0} and {r.stage for r in runs[len(pre):]} == {1}
    ft = [r.labels for r in runs[len(pre):]]
    assert [f["seed"] for f in ft] == sorted(f["seed"] for f in ft)               # fine-tuning seed-major
    arms = {(f["init"], f["rate"], f["correction"], f["drop"]) for f in ft if f["init"] != "none"}
    for arm in arms:   # every setting has every (pre-training seed, fine-tuning seed) pair
      units = {(f["pt_seed"], f["seed"]) for f in ft if (f["init"], f["rate"], f["correction"], f["drop"]) == arm}
      assert units == {(s, f) for s in range(n_pt) for f in range(n_ft)}, arm
  assert {(a[0], a[1]) for a in arms} == {("mlm", 0.15), ("mae", 0.15), ("mlm", 0.4)}
  assert ("mlm", 0.4, 0.4, 0.0) in arms and len(pre) == 6
  assert sum(r.est_s for r in mlm.plan()) <= 45 * 60
  c = launcher.load_run_config(mlm.plan()[2], (), "/w")
  assert c.init_from.workdir == "/w/runs/pt_mlm_r0.15_s0" and c.data.holdout_frac == 0.5
  assert c.data.eval_per_file == 16 and c.task.correction_r == 0
  p = launcher.load_run_config(pre[-1], ())
  assert p.data.holdout_frac == 0.5 and p.task.mask_rate == 0.4 and p.seed == 1
  assert len(mlm.plan(scale="tiny")) == 4 and len(mlm.plan(3, "default")) == 2 + 3 * 8 + 3
