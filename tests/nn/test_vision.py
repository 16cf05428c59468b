"""Vision models: MNIST-1D CNN, CIFAR ResNet-18, ViT with 2D RoPE."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kexue_jax.nn import cnn, resnet


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), nn.unbox(tree))


# ---------------------------------------------------------------- NumPy float64 reference

def np_conv1d_same(x_BLC, w_KCF, stride):
  """'SAME' conv as in XLA: out = ceil(L/s), total pad = max((out-1)s + k - L, 0), low = total//2."""
  b, l, _ = x_BLC.shape
  k = w_KCF.shape[0]
  out = -(-l // stride)
  total = max((out - 1) * stride + k - l, 0)
  lo = total // 2
  xp = np.pad(x_BLC, ((0, 0), (lo, total - lo), (0, 0)))
  y = np.zeros((b, out, w_KCF.shape[2]))
  for t in range(out):
    for j in range(k):
      y[:, t] += xp[:, t * stride + j] @ w_KCF[j]
  return y


def np_bn(x, mean, var, scale, bias, eps=1e-5):
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def np_cnn1d(params, stats, x_BL, strides, train):
  h = np.asarray(x_BL, np.float64)[..., None]
  new_stats = {}
  for i, s in enumerate(strides):
    h = np_conv1d_same(h, params[f"conv{i}"]["kernel"], s)
    if train:
      mean, var = h.mean(axis=(0, 1)), h.var(axis=(0, 1))
      new_stats[f"bn{i}"] = dict(mean=0.9 * stats[f"bn{i}"]["mean"] + 0.1 * mean,
                                 var=0.9 * stats[f"bn{i}"]["var"] + 0.1 * var)
    else:
      mean, var = stats[f"bn{i}"]["mean"], stats[f"bn{i}"]["var"]
    h = np.maximum(np_bn(h, mean, var, params[f"bn{i}"]["scale"], params[f"bn{i}"]["bias"]), 0)
  feats = h.mean(axis=1)
  return feats @ params["head"]["kernel"] + params["head"]["bias"], feats, new_stats


# ---------------------------------------------------------------- CNN1D

def _cnn_setup():
  model = cnn.CNN1D(num_classes=10, channels=(4, 6, 8), strides=(1, 2, 2), kernel_size=5)
  x = jax.random.normal(jax.random.key(1), (3, 40))
  variables = model.init(jax.random.key(0), x)
  # Non-trivial BN parameters and running statistics.
  leaves, tdef = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  leaves = [l + 0.3 * jnp.abs(jax.random.normal(k, l.shape)) for l, k in zip(leaves, keys)]
  return model, x, jax.tree.unflatten(tdef, leaves)


def test_cnn1d_eval_matches_numpy():
  model, x, variables = _cnn_setup()
  logits, feats = model.apply(variables, x, train=False)
  assert logits.shape == (3, 10) and feats.shape == (3, 8)
  assert logits.dtype == jnp.float32
  ref_logits, ref_feats, _ = np_cnn1d(_np(variables["params"]), _np(variables["batch_stats"]),
                                      x, (1, 2, 2), train=False)
  np.testing.assert_allclose(feats, ref_feats, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-5)


def test_cnn1d_train_uses_batch_stats_and_updates_them():
  model, x, variables = _cnn_setup()
  (logits, _), updates = model.apply(variables, x, train=True, mutable=["batch_stats"])
  ref_logits, _, ref_stats = np_cnn1d(_np(variables["params"]), _np(variables["batch_stats"]),
                                      x, (1, 2, 2), train=True)
  np.testing.assert_allclose(logits, ref_logits, rtol=1e-4, atol=1e-4)
  got = _np(updates["batch_stats"])
  for name, st in ref_stats.items():
    np.testing.assert_allclose(got[name]["mean"], st["mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got[name]["var"], st["var"], rtol=1e-4, atol=1e-5)
  # Train mode couples examples through batch statistics; eval mode does not.
  (l2, _), _ = model.apply(variables, x[:2], train=True, mutable=["batch_stats"])
  assert not np.allclose(l2, logits[:2], atol=1e-4)
  e_all, _ = model.apply(variables, x, train=False)
  e_two, _ = model.apply(variables, x[:2], train=False)
  np.testing.assert_allclose(e_two, e_all[:2], rtol=1e-5, atol=1e-6)


def test_cnn1d_features_only_and_bad_config():
  model = cnn.CNN1D(num_classes=None, channels=(4,), strides=(1,))
  variables = model.init(jax.random.key(0), jnp.zeros((2, 40)))
  logits, feats = model.apply(variables, jnp.ones((2, 40)))
  assert logits is None and feats.shape == (2, 4)
  with pytest.raises(ValueError, match="differ in length"):
    cnn.CNN1D(channels=(4, 5), strides=(1,)).init(jax.random.key(0), jnp.zeros((2, 40)))


# ---------------------------------------------------------------- ResNet-18

def _expected_resnet18_params(num_classes=10):
  """Count by hand: conv kernels have no bias, BN has scale+bias per channel, head has a bias."""
  conv = lambda k, cin, cout: k * k * cin * cout
  bn = lambda c: 2 * c
  total = conv(3, 3, 64) + bn(64)                      # stem
  cin = 64
  for cout, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
    for j in range(2):
      s = stride if j == 0 else 1
      total += conv(3, cin, cout) + bn(cout) + conv(3, cout, cout) + bn(cout)
      if s != 1 or cin != cout:
        total += conv(1, cin, cout) + bn(cout)           # projection shortcut
      cin = cout
  total += 512 * num_classes + num_classes             # linear head
  return total


def test_resnet18_parameter_count():
  expected = _expected_resnet18_params()
  assert expected == 11_173_962                        # the well-known CIFAR ResNet-18 count
  shapes = jax.eval_shape(
      lambda: resnet.ResNet18().init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  assert sum(p.size for p in jax.tree.leaves(nn.unbox(shapes["params"]))) == expected
  assert "batch_stats" in shapes


@pytest.mark.slow
def test_resnet_tiny_shapes_and_batchnorm_modes():
  model = resnet.ResNet(num_classes=5, stage_sizes=(1, 1), widths=(4, 8))
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
  variables = model.init(jax.random.key(1), x)
  logits, feats = model.apply(variables, x, train=False)
  assert logits.shape == (4, 5) and feats.shape == (4, 8)
  (tl, _), upd = model.apply(variables, x, train=True, mutable=["batch_stats"])
  assert tl.shape == (4, 5)
  # Running stats move: stem BN mean becomes 0.1 * (batch mean of the stem conv output).
  w = np.asarray(nn.unbox(variables["params"])["stem_conv"]["kernel"], np.float64)
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  conv = sum(xp[:, i:i + 8, j:j + 8] @ w[i, j] for i in range(3) for j in range(3))
  np.testing.assert_allclose(upd["batch_stats"]["stem_bn"]["mean"],
                             0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  # Eval mode: one example's output does not depend on the rest of the batch.
  l1, _ = model.apply(variables, x[:1], train=False)
  np.testing.assert_allclose(l1, logits[:1], rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError):
    model.apply(variables, x[0], train=False)


# ---------------------------------------------------------------- ViT with 2D RoPE

from kexue_jax.nn import vit  # noqa: E402


def _vit(**kw):
  base = dict(num_classes=5, patch_size=2, num_layers=2, embed_dim=16, num_heads=2, head_dim=8,
              mlp_dim=32)
  base.update(kw)
  return vit.ViT(**base)


@pytest.mark.slow
def test_vit_shapes_and_cls_pool():
  x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  model = _vit(pool="cls", num_layers=1)
  variables = model.init(jax.random.key(1), x)
  logits, feats = model.apply(variables, x)
  assert logits.shape == (2, 5) and feats.shape == (2, 16) and logits.dtype == jnp.float32
  assert nn.unbox(variables["params"])["cls"].shape == (1, 16)
  with pytest.raises(ValueError, match="divisible"):
    model.init(jax.random.key(1), jnp.zeros((1, 7, 6, 3)))
  with pytest.raises(ValueError, match="pool"):
    _vit(pool="max").init(jax.random.key(1), x)


def test_vit_patch_positions_are_row_major_grid():
  pos = np.asarray(vit.patch_grid_positions(2, 3))
  np.testing.assert_array_equal(pos, [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]])


def test_vit_2d_rope_depends_only_on_relative_positions():
  """Translating the whole patch grid by (dy, dx) leaves every score, hence the output, unchanged."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  model = _vit()
  variables = model.init(jax.random.key(1), x)
  grid = np.asarray(vit.patch_grid_positions(4, 4))
  base, _ = model.apply(variables, x)
  moved, _ = model.apply(variables, x, positions_BN2=grid + np.array([3.0, 5.0]))
  np.testing.assert_allclose(moved, base, rtol=1e-4, atol=1e-5)
  # ... but positions do matter: transposing (y, x) or stretching one axis changes outputs.
  for other in (grid[:, ::-1], grid * np.array([2.0, 1.0])):
    out, _ = model.apply(variables, x, positions_BN2=other)
    assert not np.allclose(out, base, atol=1e-4)


def test_vit_token_dropping_keeps_positions():
  """keep_idx gathers patches together with their grid positions (relative geometry kept)."""
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
  model = _vit(num_classes=None)
  variables = model.init(jax.random.key(1), x)
  keep = jnp.asarray([[0, 3, 5, 10, 15], [1, 2, 8, 9, 12]])
  _, f_keep = model.apply(variables, x, keep_idx_BK=keep)
  # Same tokens but translated grid: relative positions preserved -> same features.
  grid = np.asarray(vit.patch_grid_positions(4, 4)) - 7.0
  _, f_shift = model.apply(variables, x, keep_idx_BK=keep, positions_BN2=np.broadcast_to(
      grid, (2, 16, 2)))
  assert f_keep.shape == (2, 16)
  np.testing.assert_allclose(f_shift, f_keep, rtol=1e-4, atol=1e-5)
  _, f_all = model.apply(variables, x)
  assert not np.allclose(f_all, f_keep, atol=1e-4)


# ---------------------------------------------------------------- heads

from kexue_jax.nn import heads  # noqa: E402


def test_simsiam_projector_and_predictor_match_numpy_train_mode():
  x = jax.random.normal(jax.random.key(0), (6, 5))
  proj = heads.ProjectionMLP(hidden_dim=7, out_dim=4, num_layers=2)
  pred = heads.PredictionMLP(hidden_dim=3, out_dim=4)
  vp = proj.init(jax.random.key(1), x)
  z, _ = proj.apply(vp, x, train=True, mutable=["batch_stats"])
  vq = pred.init(jax.random.key(2), z)
  p, _ = pred.apply(vq, z, train=True, mutable=["batch_stats"])
  P, Q = _np(vp["params"]), _np(vq["params"])
  assert "bias" not in P["fc0"] and "bn_out" not in P     # no bias, output BN without affine
  bn = lambda h, s=None: np_bn(h, h.mean(0), h.var(0), 1.0 if s is None else s["scale"],
                               0.0 if s is None else s["bias"])
  h = np.maximum(bn(np.asarray(x, np.float64) @ P["fc0"]["kernel"], P["bn0"]), 0)
  z_ref = bn(h @ P["fc_out"]["kernel"])
  np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-5)
  h = np.maximum(bn(z_ref @ Q["fc0"]["kernel"], Q["bn0"]), 0)
  np.testing.assert_allclose(p, h @ Q["fc_out"]["kernel"] + Q["fc_out"]["bias"],
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("hidden_bn,proj_out_bn,pred_out_bn", [(False, False, False), (True, False, True)])
def test_simsiam_heads_bn_switches_match_numpy(hidden_bn, proj_out_bn, pred_out_bn):
  """SimSiam Table 3 placements: a layer without BN has a bias; BN where switched on (train mode)."""
  x = jax.random.normal(jax.random.key(0), (6, 5))
  proj = heads.ProjectionMLP(hidden_dim=7, out_dim=4, num_layers=2, hidden_bn=hidden_bn, out_bn=proj_out_bn)
  pred = heads.PredictionMLP(hidden_dim=3, out_dim=4, hidden_bn=hidden_bn, out_bn=pred_out_bn)
  vp = proj.init(jax.random.key(1), x)
  z, _ = proj.apply(vp, x, train=True, mutable=["batch_stats"])
  vq = pred.init(jax.random.key(2), z)
  p, _ = pred.apply(vq, z, train=True, mutable=["batch_stats"])
  P, Q = _np(vp["params"]), _np(vq["params"])
  bn = lambda h, s=None: np_bn(h, h.mean(0), h.var(0), 1.0 if s is None else s["scale"],
                               0.0 if s is None else s["bias"])
  lin = lambda h, w: h @ w["kernel"] + w.get("bias", 0.0)
  assert ("bias" in P["fc0"]) != hidden_bn and ("bias" in P["fc_out"]) != proj_out_bn
  assert ("bias" in Q["fc_out"]) != pred_out_bn and ("bn_out" in Q) == pred_out_bn
  h = lin(np.asarray(x, np.float64), P["fc0"])
  h = np.maximum(bn(h, P["bn0"]) if hidden_bn else h, 0)
  z_ref = lin(h, P["fc_out"])
  z_ref = bn(z_ref) if proj_out_bn else z_ref
  np.testing.assert_allclose(z, z_ref, rtol=1e-4, atol=1e-5)
  h = lin(z_ref, Q["fc0"])
  p_ref = lin(np.maximum(bn(h, Q["bn0"]) if hidden_bn else h, 0), Q["fc_out"])
  np.testing.assert_allclose(p, bn(p_ref, Q["bn_out"]) if pred_out_bn else p_ref, rtol=1e-4, atol=1e-5)


def test_classifier_head_masked_mean_pool():
  h = jax.random.normal(jax.random.key(0), (2, 5, 3))
  mask = np.array([[1, 1, 0, 1, 0], [1, 0, 0, 0, 0]], bool)
  head = heads.ClassifierHead(num_classes=4, pool="mean")
  v = head.init(jax.random.key(1), h)
  out = head.apply(v, h, padding_mask_BL=jnp.asarray(mask))
  P = _np(v["params"])
  hn = np.asarray(h, np.float64)
  pooled = np.stack([hn[b][mask[b]].mean(0) for b in range(2)])
  np.testing.assert_allclose(out, pooled @ P["out"]["kernel"] + P["out"]["bias"],
                             rtol=1e-5, atol=1e-6)
  first = heads.ClassifierHead(num_classes=4, pool="first").apply(v, h)
  np.testing.assert_allclose(first, hn[:, 0] @ P["out"]["kernel"] + P["out"]["bias"],
                             rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="pooling"):
    heads.ClassifierHead(num_classes=4, pool="max").apply(v, h)


def test_every_vision_parameter_has_logical_axis_names():
  from tests.nn.test_transformer import _assert_all_partitioned
  for model, x in [(cnn.CNN1D(channels=(4,), strides=(1,)), jnp.zeros((2, 40))),
                   (resnet.ResNet(stage_sizes=(1, 1), widths=(4, 8)), jnp.zeros((2, 8, 8, 3))),
                   (_vit(pool="cls", num_layers=1), jnp.zeros((2, 8, 8, 3))),
                   (heads.ProjectionMLP(8, 4), jnp.zeros((2, 5)))]:
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    _assert_all_partitioned(shapes["params"])
