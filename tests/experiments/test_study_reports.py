"""Each ported study's report generator on synthetic records (no training): verdicts, tables, plots, footer."""
import json
import os

from experiments.framework import claims as C
from experiments.framework import launcher
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
  for s in ("✅ holds", "67.7", "Verdict rules", "fig_curves.png", "Provenance", "verdict changed", "95% CI"):
    assert s in text, s
  assert "$" not in text.replace("$$", "")  # every template field filled
  assert os.path.exists(out / "fig_curves.png")
  res = json.loads((out / "results.json").read_text())
  assert res["meta"]["legacy"] and res["extras"]["raw"]["probe"] == 0.33
