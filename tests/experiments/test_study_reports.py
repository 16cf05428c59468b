"""Each ported study's report generator on synthetic records (no training): verdicts, tables, plots, footer."""
import json
import os

import numpy as np
import pytest

from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.mlm_dropout import study as mlm
from experiments.rdrop import study as rdrop
from experiments.simsiam import study as simsiam
from kexue_jax.evals import mask_dropout


UNTRAINED = dict(knn=0.70, z_std=0.124, z_sv_rank=48.0, z_cov_rank=23.0, z_top3_var=0.39, h_std=0.05,
                 h_sv_rank=30.0, h_cov_rank=14.0, h_top3_var=0.59)
# variant -> final metrics of a world where every claim holds (probe of the untrained network: 0.75 + 0.01 seed)
ARMS = {"simsiam": dict(probe=0.85, knn=0.83, z_cov_rank=5.5, z_top3_var=0.82, z_std=0.122),
        "no_stopgrad": dict(probe=0.80, knn=0.74, z_cov_rank=1.2, z_top3_var=0.999, z_std=0.110),
        "no_predictor": dict(probe=0.80, knn=0.79, z_cov_rank=1.5, z_top3_var=0.99, z_std=0.112),
        "frozen_predictor": dict(probe=0.72, loss=-0.3), "constlr_predictor": dict(probe=0.855),
        "headbn_none": dict(probe=0.60, z_cov_rank=4.0), "headbn_hidden": dict(probe=0.848),
        "headbn_all": dict(loss_sd=0.05), "simclr": dict(probe=0.84),
        "mean_target": dict(z_cov_rank=3.0), "mean_target_nosg": dict(z_cov_rank=1.2)}
RATIOS = {"simsiam": (2.0, 0.5), "no_stopgrad": (1.0, 0.8)}  # gradient-ratio (first window, later steps)


def _simsiam_record(variant, seed, d=64, **override):
  e = 0.002 * seed
  final = {**UNTRAINED, **ARMS["simsiam"], "loss": -0.9, "loss_sd": 0.005, **ARMS[variant], **override}
  final = {k: v + (e if k in ("probe", "knn") else e * v) for k, v in final.items()}
  loss, sd = final.pop("loss"), final.pop("loss_sd")
  curve = [dict(step=0, probe=0.75 + 0.01 * seed, **UNTRAINED), dict(step=100, **final)]
  steps = list(range(10, 110, 10))
  first, later = RATIOS.get(variant, (1.0, 1.0))
  curves = {k: [final[k]] * 10 for k in ("z_std", "z_sv_rank", "z_cov_rank", "z_top3_var", "h_cov_rank")}
  return dict(name=f"{variant}{seed}", variant=variant, seed=seed, config="c", command=f"python -m x {variant}",
              proj_dim=d, steps=100, curve=curve, final=curve[-1], untrained=curve[0], train={"loss": loss},
              train_curves={"step": steps, "loss": [loss + sd * (-1) ** i * (1 + 0.1 * seed) for i in range(10)],
                            **curves,
                            "grad_norm/encoder": [1.0] * 10,
                            "grad_norm/predictor": [first + 0.1 * seed] + [later + 0.01 * seed] * 9},
              train_time_s=10.0, eval_time_s=2.0, wall_time_s=12.0)


def simsiam_records(**override_nosg):
  return [_simsiam_record(v, s, **(override_nosg if v == "no_stopgrad" else {})) for s in range(3) for v in ARMS]


def test_simsiam_claims_on_synthetic_records():
  good = C.judge_all(simsiam.claims(64, 0.33), simsiam.samples(simsiam_records()))
  assert {v.claim.id: v.verdict for v in good} == {v.claim.id: C.HOLDS for v in good}, [v.line() for v in good]
  bad = {v.claim.id: v.verdict for v in
         C.judge_all(simsiam.claims(64, 0.33), simsiam.samples(simsiam_records(z_cov_rank=20.0)))}
  assert bad["1a"] == C.FAILS and bad["2a"] == C.HOLDS


def test_simsiam_report_from_a_results_file(tmp_path):
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"runs": simsiam_records(), "extras": {"raw": {"knn": 0.5, "probe": 0.33}}}))
  out = tmp_path / "out"
  assert launcher.main(["simsiam", "--report_only", "--results", str(path), "--out", str(out)]) == 0
  text = (out / "REPORT.md").read_text()
  for s in ("✅ holds", "67.7", "Verdict rules", "fig_curves.png", "Provenance", "95% CI"):
    assert s in text, s
  assert "$" not in text.replace("$$", "")  # every template field filled
  assert os.path.exists(out / "fig_curves.png")
  res = json.loads((out / "results.json").read_text())
  assert res["extras"]["raw"]["probe"] == 0.33


# ------------------------------------------------------------------------------------------------ R-Drop.


def rdrop_records(gain=0.03, gap_slope=-1.0, semi_gain=0.05, seeds=5, std=0.002, scale="full"):
  """Records of every run of a plan: R-Drop's gain over the two-pass control grows with α up to 4 (x2 at
  n = 1000, p = 0.3; x4 at 4x width there), α = 64 under-fits, the gap is exp(gap_slope α/4) x 0.1; a semi run at
  a smaller β gains 2 semi_gain, at Su's β = 4 semi_gain, with its train CE 2 semi_gain above the smaller β's."""
  rng = np.random.default_rng(0)
  out = []
  for run in rdrop.plan(seeds=None if scale in ("default", "extended") else seeds, scale=scale):
    lab, e = run.labels, rng.normal(size=3) * std
    a, semi = lab["alpha"], lab["labelled"] and lab["unlabelled"]
    factor = 1 + (lab["train_size"] == 1000 and lab["dropout"] == 0.3) + 2 * bool(lab["width"])
    acc = (0.67 if lab["labelled"] else 0.5) + 0.005 * (lab["passes"] == "duplicate") + semi_gain * semi
    acc += semi_gain * ("beta" in lab)
    ce = (1.5 if a > 4 else 0.5) + 2 * semi_gain * (semi and "beta" not in lab)
    acc += -0.1 if a > 4 else 0.0 if lab["labelled"] else gain * factor * a / 4
    out.append(dict(lab, name=run.name, wall_time_s=10.0, command="python -m ...",
                    eval=dict(accuracy=acc + e[0], dropout_kl=0.1 * np.exp(gap_slope * min(a, 4) / 4 + e[1] * 20),
                              consistency_kl=0.05), train=dict(ce=ce + e[2], accuracy=0.9)))
  return out


def _rdrop_verdicts(records):
  data = rdrop.samples(records)
  return {v.claim.id: v.verdict for v in C.judge_all(rdrop.claims(data), data)}


def test_rdrop_claims_on_synthetic_records():
  good = _rdrop_verdicts(rdrop_records())
  ids = {i.split()[0] for i in good}
  assert ids == set("123456789") | {"10"} and set(good.values()) == {C.HOLDS}, good
  assert sum(i.startswith("1 ") for i in good) == 8 and sum(i.startswith("5 ") for i in good) == 6
  bad = _rdrop_verdicts(rdrop_records(gain=-0.03, gap_slope=1.0, semi_gain=-0.05))
  assert {i: v for i, v in bad.items() if v != C.FAILS} == {i: C.HOLDS for i in bad if i.startswith("4 ")}, bad
  # Within noise and 3 seeds, R-Drop at Su's cell cannot be told from the control either way.
  noisy = _rdrop_verdicts(rdrop_records(gain=0.0, seeds=3, std=0.05))
  assert noisy["2 mlp/n1000/p0.3"] == C.INCONCLUSIVE


def test_rdrop_report_and_a_diverged_run(tmp_path):
  recs = rdrop_records(scale="extended")   # fewer plotted lines than the full plan
  recs.append({**recs[0], "seed": 99, "name": "diverged", "eval": {}, "train": {}, "error": "Non-finite loss"})
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"runs": recs}))
  assert launcher.main(["rdrop", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 0
  text = (tmp_path / "o" / "REPORT.md").read_text()
  for s in ("✅ holds", "62.69", "`diverged`: Non-finite loss", "fig_supervised.png", "non-inferiority margin 0.5",
            "| mlp | n1000w1024 | p0.3 | a4 |", "+ unlabelled KL (β = 4, joint step)", "+ unlabelled KL, β = 1",
            "Su's alternating steps", "semi-supervised 100 labels, alternating", "Su's cell"):
    assert s in text, s
  assert "$" not in text.replace("$$", "")


def test_rdrop_plan_and_configs():
  default, runs, full = rdrop.plan(), rdrop.plan(scale="extended"), rdrop.plan(scale="full")
  assert len({r.name for r in runs}) == len(runs) == 185 and len({r.name for r in full}) == len(full) == 394
  # #16's budget: the default within 30 minutes on 2 processes; extended adds the alternating arm and claim 7's
  # 21 seeds (~19 min more); full and extended reuse every default run, full every extended one.
  assert len(default) == 114 and sum(r.est_s for r in default) / 2 <= 30 * 60
  assert sum(r.labels["model"] == "cnn" for r in runs) == 31
  assert {r.name for r in default} <= {r.name for r in runs} <= {r.name for r in full}
  seeds = lambda pred: sorted(r.labels["seed"] for r in runs if pred(r.labels))
  assert seeds(lambda l: l["width"]) == sorted(list(range(rdrop.CAPACITY_SEEDS)) * 2)   # claim 7's settings
  assert seeds(lambda l: l.get("semi") == "alternate") == list(range(rdrop.ALTERNATE_SEEDS))
  grid = {(r.labels["model"], r.labels["train_size"], r.labels["dropout"], r.labels["passes"], r.labels["alpha"])
          for r in full if r.labels["part"] == "grid"}
  assert len(grid) == 48 and {r.labels["labelled"] for r in full} == {0, 100, 200}
  cfg = lambda pred: launcher.load_run_config(next(r for r in runs if pred(r.labels)), ())
  c = cfg(lambda l: l["unlabelled"] and "beta" not in l)
  assert c.data.preprocess == "classification_semi" and c.data.num_labelled == 100 and c.num_train_steps == 6000
  assert c.task.rdrop_alpha == 0 and c.task.unlabelled_alpha == 4 and c.task.passes == "duplicate"
  semi_beta = [r for r in runs if "beta" in r.labels]   # the smaller-β arms: Su's arm keeps its name (cache key)
  assert {r.labels["beta"] for r in semi_beta} == set(rdrop.mnist1d.SEMI_BETAS) and len(semi_beta) == 3
  c = launcher.load_run_config(semi_beta[0], ())
  assert c.task.unlabelled_alpha == rdrop.mnist1d.SEMI_BETAS[0] and c.data.preprocess == "classification_semi"
  c = cfg(lambda l: l["labelled"] and l["passes"] == "duplicate" and l["alpha"] == 0 and not l["unlabelled"])
  assert c.data.train_split == "train[:100]" and c.data.preprocess == "classification_inmemory"
  c = cfg(lambda l: l["seed"] == 2 and l["passes"] == "duplicate" and l["alpha"] == 0 and l["train_size"] == 4000)
  assert c.task.rdrop_alpha == 0 and c.seed == 2 and c.data.train_split == "train[:4000]" and c.num_train_steps == 7500
  c = cfg(lambda l: l["width"] and l["alpha"] == 4)
  assert c.model.hidden_dims == (1024, 1024) and c.model.dropout_rate == 0.3 and c.num_train_steps == 2500
  assert cfg(lambda l: l["passes"] == "single").task.passes == "single"
  c = cfg(lambda l: l.get("semi") == "alternate")
  assert c.task.semi_schedule == "alternate" and c.data.num_labelled == 100 and c.task.rdrop_alpha == 0
  assert [t.get("learning_rate", c.optimizer.learning_rate) for t in c.optimizer.alternate] == [1e-3, 5e-4]


def test_rdrop_plan_keeps_the_committed_runs():
  """The committed report is the whole `full` plan, each run with its config and labels (cache keys unchanged);
  beyond the default's 114 runs `extended` adds only the alternating arm, its control's seeds 3-4 and claim 7's
  seeds 5-20."""
  with open(os.path.join(os.path.dirname(rdrop.__file__), "results.json")) as f:
    committed = {r["name"]: r for r in json.load(f)["runs"]}
  full = {r.name: r for r in rdrop.plan(scale="full")}
  assert set(committed) == set(full) and {n: r.config for n, r in full.items()} == {
      n: r["config"] for n, r in committed.items()}
  assert all(full[n].labels == {k: committed[n][k] for k in full[n].labels} for n in committed)
  assert all(r["eval"].get("accuracy") is not None for r in committed.values())   # every run evaluated at its end
  default, runs = {r.name for r in rdrop.plan()}, {r.name: r for r in rdrop.plan(scale="extended")}
  new = [r.labels for n, r in runs.items() if n not in default]
  assert sum(l.get("semi") == "alternate" for l in new) == 5 and sum(l["seed"] >= 5 for l in new) == 64
  assert len(new) == 5 + 2 + 64


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
  extras = {"timing": {"droptoken": {str(p): 0.1 * (1 - p) + 0.01 + 1e-4 * rng.normal() for p in mlm.DROPS},
                       "pretrain": {"mlm": 0.2, "mae": 0.21, "mae@0.75": 0.1, "mlm@0.75": 0.2}},
            "classes": ["a", "b"], "eval_counts": [n // 2, n // 2], "eval_files": np.repeat(np.arange(n_files),
                                                                                          per_file).tolist(),
            "identity": mask_dropout.mask_identity(), "setup": {"pretrain_steps": 1200, "finetune_steps": 150,
                                                               "pool": "mean", "eval_per_file": per_file}}
  return {"study": "mlm_dropout", "runs": records, "extras": extras, "meta": {"trained_on": "synthetic"}}


def test_mlm_claims_and_report_on_synthetic_records(tmp_path):
  res = mlm_results()
  data = mlm.samples(res["runs"], res["extras"])
  assert len(data[f"acc:{mlm.key('mlm', 0.15, 0, 0)}"]) == 10                      # 2 pre-training x 5 seeds
  assert set(data[f"acc@f:{mlm.key('mlm', 0.15, 0, 0)}"]) == {f"f{f}" for f in range(5)}
  judged = {v.claim.id: v for v in C.judge_all(mlm.claims(), data)}
  verdicts = {i: v.verdict for i, v in judged.items()}
  assert all(verdicts[i] == C.HOLDS for i in ("1", "1b", "2 p0.1", "2 p0.15", "3", "4", "6a", "6b")), judged
  # Between pre-training arms the unit is the pre-training seed (mean over its fine-tuning seeds): 2 < min_n 3.
  assert data[f"acc@s:{mlm.key('mae', 0.15, 0, 0)}"] == pytest.approx(
      {s: np.mean([v for u, v in data[f"acc:{mlm.key('mae', 0.15, 0, 0)}"].items() if u.startswith(s + "/")])
       for s in ("s0", "s1")})
  for i in ("5", "7"):
    assert verdicts[i] == C.INCONCLUSIVE and judged[i].n == 2 and "2 pre-training seeds, below the minimum 3" in \
        judged[i].line(), judged[i].line()
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
