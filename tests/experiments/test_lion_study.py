"""The Lion study (experiments/lion/study.py): its plan, its claims on synthetic records, its report (no training)."""
import json
import os

import numpy as np

from experiments.framework import claims as C
from experiments.framework import launcher
from experiments.lion import study as lion

COMMITTED = os.path.join(launcher.EXPERIMENTS, "lion", "results.json")
FREQUENT, RARE = slice(65, 91), slice(128, 160)


def lion_records(gap_small=0.05, tiger_delta=0.005, drift=True, noise=0.003, seed=0):
  """Records of lion.plan() in a world where the claims hold: AdamW's best lr 6-7x Lion's (LM: 2e-3 vs 3e-4,
  MNIST-1D: 6e-3 vs 1e-3), λ 6x, the batch gap closing, rare bytes' rows drifting toward 1/λ under
  untied Lion/Tiger only (``drift``: row mean |θ| 0.08 -> 0.68, 5 checkpoints)."""
  rng = np.random.default_rng(seed)
  counts = np.zeros(256, np.int64)
  counts[FREQUENT], counts[RARE] = 380_000, 300   # frequent letters; rare bytes (~12 expected occurrences)
  out = []
  for run in lion.plan():
    r = dict(run.labels, name=run.name, command="python -m ...", wall_time_s=30.0)
    o, b = r["opt"], r["batch"]
    lr, wd = lion.amos_hp(r["amos"]) if r["amos"] else (r["lr"], r["wd"])
    if r.get("task"):
      best = {"lion": 1e-3, "adamw": 6e-3}[o]
      r.update(eval={"accuracy": 0.7 - 0.2 * np.log10(lr / best) ** 2 + noise * rng.normal()})
      out.append(r)
      continue
    best = {"lion": (3e-4, 0.3), "adamw": (2e-3, 0.05), "tiger": (3e-4, 0.3)}[o]
    loss = 2.5 + 0.1 * np.log10(lr / best[0]) ** 2 + 0.02 * np.log10(wd / best[1]) ** 2
    loss += tiger_delta * (o == "tiger") + (gap_small * np.log2(16 / b) / 2 if o == "lion" else 0.0)
    r.update(lr=lr, wd=wd, tokens=r["steps"] * b * 64, eval={"loss": loss + noise * rng.normal()},
             param_bytes=460_032 * 4, state_bytes=460_032 * 4 * (2 if o == "adamw" else 1) + 8)
    if r["emb"]:
      stale = drift and r["untied"] and r["fix"] == "none" and o != "adamw"
      curve = []
      for k, step in enumerate(range(300, r["steps"] + 1, 300)):
        row_mean = 0.08 + 0.005 * rng.normal(size=256)
        row_mean[FREQUENT] += 0.02
        row_mean[RARE] += 0.12 * (k + 1) if stale else -0.01
        curve.append({"step": step, "max": (row_mean * 2.5).tolist(), "mean": row_mean.tolist()})
      r["embedding"] = curve
    out.append(r)
  return out, {"byte_counts": counts.tolist()}


def test_plan_keeps_the_committed_runs_and_adds_the_new_arms():
  """The committed report's runs are exactly the default plan, with the same configs and overrides (their records
  are reused); the arms the redesign added are in it: the lr grid past 3e-3, the λ-sweep seeds, the long anomaly
  runs, the MNIST-1D sweep."""
  runs = {r.name: r for r in lion.plan()}
  with open(COMMITTED) as f:
    committed = {r["name"]: r for r in json.load(f)["runs"]}
  assert sorted(committed) == sorted(runs)
  for name in set(committed) & set(runs):
    assert runs[name].config == committed[name]["config"], name
    assert [f"--config.{o}" for o in runs[name].overrides] == committed[name]["command"].split()[7:], name
  lrs = {r.labels["lr"] for r in runs.values() if r.labels["opt"] == "lion" and r.labels["wd"] == 0.3
         and r.labels["batch"] == 16 and not r.labels.get("task")}
  assert max(lrs) == 3e-2 > 3e-3   # past the committed optimum's grid edge
  wd_sweep = [r for r in runs.values() if r.labels["opt"] == "lion" and r.labels["lr"] == 3e-4
              and r.labels["batch"] == 16 and r.labels["wd"] in (0.03, 3.0)]
  assert sorted(r.labels["seed"] for r in wd_sweep) == [0, 0, 1, 1, 2, 2]
  emb = [r for r in runs.values() if r.labels["emb"]]
  assert len(emb) == 12 and all(r.labels["steps"] >= 1000 for r in emb)   # 6 arms x 2 seeds
  for r in emb:
    if r.labels["opt"] != "adamw":   # ≥ 1/(lr·λ) steps even after the schedule (~0.55 of the peak on average)
      assert 0.55 * r.labels["lr"] * r.labels["wd"] * r.labels["steps"] >= 2
    assert f"checkpoint_every_steps={r.labels['steps'] // lion.EMB_CKPTS}" in r.overrides
  cls = [r for r in runs.values() if r.labels.get("task") == "mnist1d"]
  assert len(cls) == 30 and {r.labels["seed"] for r in cls} == {0, 1, 2}
  c = launcher.load_run_config(next(r for r in cls if r.labels["opt"] == "lion"), ())
  assert c.data.name == "mnist1d" and c.optimizer.name == "lion" and c.optimizer.b2 == 0.99
  assert c.optimizer.weight_decay == 0.3 and c.model.name == "mlp"
  c = launcher.load_run_config(next(r for r in emb if r.labels["fix"] == "emb_adamw"), ())
  assert c.data.seq_len == 64 and not c.model.tie_embedding and c.optimizer.param_groups[0]["name"] == "adamw"
  est = sum(r.est_s for r in runs.values())
  assert est / 2 <= 30 * 60   # with --processes 2 (the launcher halves the sum): within the 30-minute budget
  assert len(lion.plan(scale="tiny")) == 8 and len(lion.plan(scale="full")) > len(runs)
  for scale in ("default", "full"):   # the anomaly claims name the settings the scale's plan runs
    keys = {lion.key(r.labels) for r in lion.plan(scale=scale) if r.labels["emb"]}
    assert set(lion._emb_keys(scale).values()) <= keys, scale  # pylint: disable=protected-access


def test_lion_claims_on_synthetic_records():
  records, extras = lion_records()
  data = lion.samples(records, extras["byte_counts"])
  v = {x.claim.id: x.verdict for x in C.judge_all(lion.claims(), data)}
  assert all(v[k] == C.HOLDS for k in v if k not in ("5a", "5b")), v   # Amos' λ 0.017 is far from the best 0.3
  assert v["5b"] == C.FAILS
  bad_records, _ = lion_records(gap_small=-0.05, tiger_delta=0.2, drift=False)
  bad = {x.claim.id: x.verdict for x in C.judge_all(lion.claims(), lion.samples(bad_records, extras["byte_counts"]))}
  assert bad["2a"] == bad["2b"] == bad["3a"] == bad["4a"] == bad["4b"] == bad["4g"] == C.FAILS, bad


def test_anomaly_samples_keep_every_seed():
  """Each anomaly run adds its bytes (unit "seed/byte"): seed 1 no longer overwrites seed 0."""
  records, extras = lion_records()
  data = lion.samples(records, extras["byte_counts"])
  rare = data[f"row:{lion._emb_keys()['lion']}:rare"]  # pylint: disable=protected-access
  seeds = sorted({r["seed"] for r in records if r["emb"]})
  assert len(seeds) == 2 and rare.keys() == {f"{s}/{i}" for s in seeds for i in range(RARE.start, RARE.stop)}


def test_a_best_at_the_grid_edge_makes_the_sweep_claims_inconclusive():
  records, extras = lion_records()
  data = lion.samples(records, extras["byte_counts"])
  assert lion.edge_vetoes(data) == {}
  data["edgewd:lion"] = {**data["edgewd:lion"], 1: 1.0}
  vetoes = lion.edge_vetoes(data)
  assert sorted(vetoes) == ["1b", "5b"]
  v = {x.claim.id: x for x in C.judge_all(lion.claims(), data, vetoes=vetoes)}
  assert v["1b"].verdict == v["5b"].verdict == C.INCONCLUSIVE and "extend the grid" in v["5b"].line()
  assert v["1a"].verdict == C.HOLDS
  data["logwd:lion"] = dict.fromkeys(data["logwd:lion"], -1.5)   # every seed at the grid edge: no spread either
  v5 = C.judge_all(lion.claims(), data, vetoes=vetoes)[-1]
  assert v5.claim.id == "5b" and "no spread" in v5.line() and "extend the grid" in v5.line()


def test_lion_report(tmp_path):
  records, extras = lion_records()
  records.append({**records[0], "seed": 9, "name": "diverged", "eval": {}, "error": "Non-finite loss"})
  path = tmp_path / "results.json"
  path.write_text(json.dumps({"runs": records, "extras": extras}))
  assert launcher.main(["lion", "--report_only", "--results", str(path), "--out", str(tmp_path / "o")]) == 0
  text = (tmp_path / "o" / "REPORT.md").read_text()
  for s in ("✅ holds", "`diverged`: Non-finite loss", "fig_lion.png", "77.9", "Provenance", "MNIST-1D",
            "one parameter-sized buffer", "0.50 → 0.80 → 1.10"):
    assert s in text, s
  assert "$" not in text and (tmp_path / "o" / "fig_lion.png").exists()
