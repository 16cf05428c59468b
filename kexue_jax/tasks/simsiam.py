r"""SimSiam (Chen & He, arXiv 2011.10566) and Su's dynamics ablations (https://kexue.fm/archives/7980).

The network
-----------
    h = f_backbone(x)                    backbone features (what kNN / linear probes read)
    z = g(h)                             projector: [Dense(no bias) - BN - ReLU] x (L - 1) - Dense(no bias)
                                         - BN(no affine)                          (nn/heads.ProjectionMLP)
    p = q(z)                             predictor: Dense(no bias) - BN - ReLU - Dense(bias), bottleneck
                                         hidden = d/4                              (nn/heads.PredictionMLP)

Parameters live in three top-level subtrees, ``backbone``, ``projector``, ``predictor``: the optimizer's
``param_groups`` select the predictor by the path pattern ``^predictor/`` (frozen predictor, constant-lr
predictor), and the loop logs the gradient norms of the groups in ``grad_norm_groups``
(``predictor`` and ``encoder`` = backbone + projector, Su's fast and slow variables).

The loss
--------
Two views x1 = T1(x), x2 = T2(x) (kexue_jax/data/augment.py, drawn inside the jitted step from the step
key), each through the network in its own forward pass (as the official code: BatchNorm statistics per
view), and with D(p, z) = - <p/||p||, z/||z||>:

    L = 1/2 D(p1, sg(z2)) + 1/2 D(p2, sg(z1))          (Eq. 4; sg = stop-gradient = lax.stop_gradient)

averaged over the batch; min L = -1. The switches (``config.task``):

  stop_gradient=False   sg removed: the targets z2, z1 also carry gradient (the paper's collapse, Fig. 2).
  predictor='none'      q = identity (p = z): Table 1a.
  (predictor frozen / own constant lr: optimizer param_groups, see configs/simsiam/.)
  objective='simclr'    the reference arm: SimCLR's NT-Xent on (z1, z2) (``nt_xent_B``; needs predictor='none',
                        target='view'), the same backbone, projector, views and optimizer, so that the table has a
                        contrastive baseline that cannot collapse by construction (the negatives push views apart).
  target='mean_view'    Su's open question (https://kexue.fm/archives/7980): the target of both branches is the
                        representation of the *averaged augmentation*, z_bar = g(f(x_bar)) with
                        x_bar = (1/K) sum_k T_k(x) (K = ``target_views`` fresh views):
                        L = 1/2 D(p1, sg(z_bar)) + 1/2 D(p2, sg(z_bar)); stop_gradient and predictor
                        switch as above.

Monitors (``aux['metrics']``, every step, and ``evaluate``): ``loss``; for the backbone features h and the
projector output z separately (which layer collapses), ``h/...`` and ``z/...`` = ssl.rank_statistics: ``std``
(collapse_std, compare 1/sqrt(d)), ``sv_rank`` (singular-value entropy rank, RankMe), ``cov_rank`` (covariance
entropy rank: the collapse statistic) and ``top3_var`` (variance fraction of the top-3 principal components);
``p/std`` for the predictions. Each rank statistic is one eigvalsh of a min(B, D)-sized Gram matrix
(kexue_jax/evals/ssl.py), not an SVD of z. The loop adds ``grad_norm/predictor`` and ``grad_norm/encoder``
(``grad_ratio_curve`` turns a run's metrics into the fast-predictor / slow-encoder curve).

BatchNorm synchronisation
-------------------------
BatchNorm computes its batch statistics with ``jnp.mean`` over the batch axis. The step is one ``jax.jit``
over the *global* batch, sharded over the mesh's data axes, so GSPMD turns that mean into a mean over the
global batch (an all-reduce across the data-parallel devices): the statistics are synchronised across
devices by construction (SyncBN), with no ``axis_name``. tests/tasks/test_simsiam.py checks that an 8-device
data-parallel loss, gradient and BN update equal the single-device ones on the same global batch (and differ
from per-device statistics). The running averages are carried in the train state (``aux['mutable']``).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from kexue_jax import models
from kexue_jax.data import augment
from kexue_jax.evals import ssl
from kexue_jax.nn import heads
from kexue_jax.tasks import base

PREDICTORS = ("mlp", "none")
TARGETS = ("view", "mean_view")
OBJECTIVES = ("simsiam", "simclr")
# BatchNorm in the heads, SimSiam Table 3: name -> (projector hidden, projector output, predictor hidden,
# predictor output); paper ImageNet top-1: none 34.6, hidden 67.4, default 68.1, all 'unstable'.
HEAD_BN = {"none": (False, False, False, False), "hidden": (True, False, True, False),
           "default": (True, True, True, False), "all": (True, True, True, True)}
MONITOR_TOP_K = 3  # top_k_variance of the monitors: the top-3 principal components' share of the variance


# ---------------------------------------------------------------------------------------------- The loss.


def negative_cosine_B(p_BD, z_BD, eps: float = 1e-8):
  """D(p, z) = -<p/||p||, z/||z||> per example (float32), with ||.|| floored at eps (ssl.l2_normalize: a
  zero vector, e.g. a predictor output whose ReLU units are all off, gets a finite gradient)."""
  return -jnp.sum(ssl.l2_normalize(p_BD.astype(jnp.float32), eps=eps) *
                  ssl.l2_normalize(z_BD.astype(jnp.float32), eps=eps), axis=-1)


def simsiam_loss(p1_BD, p2_BD, t1_BD, t2_BD, *, stop_gradient: bool = True):
  """L = 1/2 mean D(p1, sg(t2)) + 1/2 mean D(p2, sg(t1)); t = z of the views (or z_bar, module docstring)."""
  if stop_gradient:
    t1_BD, t2_BD = jax.lax.stop_gradient(t1_BD), jax.lax.stop_gradient(t2_BD)
  return 0.5 * jnp.mean(negative_cosine_B(p1_BD, t2_BD)) + 0.5 * jnp.mean(negative_cosine_B(p2_BD, t1_BD))


def nt_xent_B(z1_BD, z2_BD, temperature: float):
  """SimCLR's NT-Xent (Chen et al., arXiv 2002.05709, Eq. 1) per positive pair, averaged over its two directions:
  with u = l2-normalised [z1; z2] (2B rows) and s_ij = <u_i, u_j> / T,

      l(i, j) = - s_ij + log sum_{k != i} exp(s_ik),    loss_b = 1/2 (l(b, B + b) + l(B + b, b)).

  Float32; the negatives are the other 2B - 2 views of the batch (no stop-gradient, no predictor)."""
  b = z1_BD.shape[0]
  u = ssl.l2_normalize(jnp.concatenate([z1_BD, z2_BD]).astype(jnp.float32))
  s = (u @ u.T) / temperature
  s = jnp.where(jnp.eye(2 * b, dtype=bool), -jnp.inf, s)
  pos = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
  l = jax.nn.logsumexp(s, axis=-1) - s[jnp.arange(2 * b), pos]
  return 0.5 * (l[:b] + l[b:])


def su_toy_dynamics(stop_gradient: bool, *, phi0: float = 0.6, theta0: float = 0.1, dt: float = 1e-3,
                    steps: int = 20_000):
  """Su's scalar toy model (kexue.fm/archives/7980): Euler steps of the gradient flow of

      l(phi, theta) = 1/2 (phi * theta - sg(theta))^2,

  phi = predictor, theta = encoder, the second theta = the target branch. With stop-gradient
  dphi/dt = -(phi theta - theta) theta, dtheta/dt = -(phi theta - theta) phi, so theta^2 - phi^2 is conserved
  and (phi, theta) -> (1, sqrt(theta0^2 + 1 - phi0^2)) = (1, sqrt(0.65)); the full gradient adds
  +(phi theta - theta) to dtheta/dt and theta -> 0 (collapse). Uses jax.grad through lax.stop_gradient (so it
  exercises the same mechanism as the loss). Returns (phi, theta) trajectories, float32[steps + 1] each.
  """
  def loss(w):
    phi, theta = w[0], w[1]
    target = jax.lax.stop_gradient(theta) if stop_gradient else theta
    return 0.5 * (phi * theta - target) ** 2

  def step(w, _):
    w = w - dt * jax.grad(loss)(w)
    return w, w

  w0 = jnp.array([phi0, theta0], jnp.float32)
  _, traj = jax.lax.scan(step, w0, None, length=steps)
  traj = jnp.concatenate([w0[None], traj])
  return traj[:, 0], traj[:, 1]


# ---------------------------------------------------------------------------------------------- The network.


class SimSiamNet(nn.Module):
  """backbone -> projector -> predictor; returns (h_BF, z_BD, p_BD) (p = z without a predictor)."""
  backbone: nn.Module
  proj_hidden_dim: int = 2048
  proj_dim: int = 2048
  proj_layers: int = 3
  pred_hidden_dim: int = 512
  use_predictor: bool = True
  head_bn: str = "default"  # a key of HEAD_BN

  def setup(self):
    proj_hidden, proj_out, pred_hidden, pred_out = HEAD_BN[self.head_bn]
    self.projector = heads.ProjectionMLP(self.proj_hidden_dim, self.proj_dim, num_layers=self.proj_layers,
                                         hidden_bn=proj_hidden, out_bn=proj_out)
    if self.use_predictor:
      self.predictor = heads.PredictionMLP(self.pred_hidden_dim, self.proj_dim, hidden_bn=pred_hidden,
                                           out_bn=pred_out)

  def encode(self, x, *, train: bool = False):
    _, h_BF = self.backbone(x, train=train)
    return h_BF, self.projector(h_BF, train=train)

  def __call__(self, x, *, train: bool = False):
    h_BF, z_BD = self.encode(x, train=train)
    p_BD = self.predictor(z_BD, train=train) if self.use_predictor else z_BD
    return h_BF, z_BD, p_BD


@dataclasses.dataclass(frozen=True)
class SimSiamConfig:
  """``config.task`` of the "simsiam" task (module docstring); the sizes default to the paper's ImageNet ones."""
  views: str = "mnist1d"                # a key of kexue_jax.data.augment.VIEWS
  augment: dict[str, Any] | None = None  # keyword arguments of the view function
  normalize: Any = None                 # None or (mean, std) per channel, applied after augmentation
  proj_hidden_dim: int = 2048
  proj_dim: int = 2048
  proj_layers: int = 2
  pred_hidden_dim: int = 512
  predictor: str = "mlp"                # one of PREDICTORS
  stop_gradient: bool = True
  target: str = "view"                  # one of TARGETS
  target_views: int = 8                 # K of target='mean_view'
  head_bn: str = "default"              # BatchNorm in the heads: a key of HEAD_BN (the paper's Table 3)
  objective: str = "simsiam"            # one of OBJECTIVES; 'simclr': NT-Xent on (z1, z2), the reference arm
  temperature: float = 0.5              # T of objective='simclr' (SimCLR's CIFAR-10 value)
  eval_seed: int = 0


def build_network(config: ml_collections.ConfigDict) -> SimSiamNet:
  t = base.task_config(SimSiamConfig, config.task)
  backbone = models.build_model(config.model)
  if getattr(backbone, "num_classes", None) is not None:
    raise ValueError("the SimSiam backbone must be a feature extractor: set config.model.num_classes=None.")
  return SimSiamNet(backbone=backbone, proj_hidden_dim=int(t.proj_hidden_dim), proj_dim=int(t.proj_dim),
                    proj_layers=int(t.proj_layers), pred_hidden_dim=int(t.pred_hidden_dim),
                    use_predictor=t.predictor == "mlp", head_bn=t.head_bn)


# ---------------------------------------------------------------------------------------------- The task.


class SimSiamTask(base.Task):
  """Self-supervised SimSiam on batches {"x", ["label"]} (labels are ignored by the loss).

  config.task: name="simsiam" and the fields of `SimSiamConfig`.
  """

  unit = "examples"

  def __init__(self, config: ml_collections.ConfigDict):
    t = base.task_config(SimSiamConfig, config.task)
    self.views_name = t.views
    if self.views_name not in augment.VIEWS:
      raise ValueError(f"unknown task.views {self.views_name!r}; expected one of {sorted(augment.VIEWS)}.")
    self.predictor = t.predictor
    if self.predictor not in PREDICTORS:
      raise ValueError(f"unknown task.predictor {self.predictor!r}; expected one of {PREDICTORS} (a frozen or "
                       "constant-lr predictor is 'mlp' plus optimizer.param_groups, see configs/simsiam/).")
    self.target = t.target
    if self.target not in TARGETS:
      raise ValueError(f"unknown task.target {self.target!r}; expected one of {TARGETS}.")
    self.target_views = int(t.target_views)
    if self.target == "mean_view" and self.target_views < 1:
      raise ValueError(f"task.target_views must be >= 1, got {self.target_views}.")
    self.objective, self.temperature = t.objective, float(t.temperature)
    if self.objective not in OBJECTIVES:
      raise ValueError(f"unknown task.objective {self.objective!r}; expected one of {OBJECTIVES}.")
    if self.objective == "simclr" and (t.predictor != "none" or t.target != "view"):
      raise ValueError("task.objective='simclr' contrasts the projector outputs of two views: set "
                       "task.predictor='none' and task.target='view'.")
    if t.head_bn not in HEAD_BN:
      raise ValueError(f"unknown task.head_bn {t.head_bn!r}; expected one of {sorted(HEAD_BN)}.")
    self.stop_gradient = bool(t.stop_gradient)
    self.augment_kw = dict(t.augment or {})
    norm = t.normalize
    self.normalize = None if norm is None else (jnp.asarray(norm[0], jnp.float32), jnp.asarray(norm[1], jnp.float32))
    self.eval_seed = int(t.eval_seed)
    self.net = build_network(config)
    self.grad_norm_groups = {"encoder": ("backbone", "projector")}
    if self.predictor == "mlp":
      self.grad_norm_groups["predictor"] = ("predictor",)

  # -- views and forward passes
  def views(self, rng, x):
    """A random view of every example (augment.VIEWS[views]), then the input normalisation."""
    v = augment.VIEWS[self.views_name](rng, x, **self.augment_kw)
    return self.prepare(v)

  def prepare(self, x):
    x = x.astype(jnp.float32)
    if self.normalize is not None:
      x = (x - self.normalize[0]) / self.normalize[1]
    return x

  def _apply_train(self, variables, x):
    """((h, z, p), variables with the updated batch_stats)."""
    out, new = self.net.apply(variables, x, train=True, mutable=["batch_stats"])
    return out, {**variables, **new}

  def init(self, rng, batch):
    return self.net.init({"params": rng}, self.prepare(batch["x"]), train=False)

  def embed(self, variables, x, *, train: bool = False):
    """(h_BF, z_BD) in inference mode (BN running averages) of already prepared inputs."""
    return self.net.apply(variables, x, train=train, method=SimSiamNet.encode)

  # -- training
  def loss(self, variables, batch, rng) -> tuple[jax.Array, dict[str, Any]]:
    x = batch["x"]
    k1, k2, kt = jax.random.split(rng, 3)
    (h1, z1, p1), v = self._apply_train(variables, self.views(k1, x))
    (_, z2, p2), v = self._apply_train(v, self.views(k2, x))
    if self.target == "view":
      t1, t2 = z1, z2
    else:
      keys = jax.random.split(kt, self.target_views)
      x_bar = jnp.mean(jnp.stack([augment.VIEWS[self.views_name](k, x, **self.augment_kw) for k in keys]), axis=0)
      # The target pass normalises with the statistics of x_bar (lower variance than a view) and its running
      # average update is discarded: the BN running statistics are those of the two view passes only.
      (_, z_bar, _), _ = self._apply_train(v, self.prepare(x_bar))
      t1 = t2 = z_bar
    if self.objective == "simclr":
      loss = jnp.mean(nt_xent_B(z1, z2, self.temperature))
    else:
      loss = simsiam_loss(p1, p2, t1, t2, stop_gradient=self.stop_gradient)
    metrics = self._monitors(h1, z1, p1)
    return loss, {"metrics": metrics, "mutable": {k: val for k, val in v.items() if k != "params"}}

  @staticmethod
  def _monitors(h, z, p):
    # Monitors are not differentiated: stop_gradient keeps the eigendecomposition's derivative
    # (1 / (lam_i - lam_j), NaN at repeated eigenvalues) out of the backward pass, where 0 * NaN would poison the
    # gradients.
    h, z, p = jax.lax.stop_gradient((h, z, p))
    return {**ssl.rank_statistics(h, top_k=MONITOR_TOP_K, prefix="h/"),
            **ssl.rank_statistics(z, top_k=MONITOR_TOP_K, prefix="z/"), "p/std": ssl.collapse_std(p)}

  # -- evaluation (BN in inference mode; fixed views)
  def evaluate(self, variables, batch):
    x = batch["x"]
    k1, k2 = jax.random.split(jax.random.key(self.eval_seed))
    h1, z1, p1 = self.net.apply(variables, self.views(k1, x), train=False)
    _, z2, p2 = self.net.apply(variables, self.views(k2, x), train=False)
    n = jnp.asarray(x.shape[0], jnp.float32)
    if self.objective == "simclr":
      d = nt_xent_B(z1, z2, self.temperature)
    else:
      d = 0.5 * (negative_cosine_B(p1, z2) + negative_cosine_B(p2, z1))
    one = jnp.ones((), jnp.float32)  # per-batch statistics: averaged over batches
    out = {"loss": (jnp.sum(d), n)}
    out.update({k: (val, one) for k, val in self._monitors(h1, z1, p1).items()})
    return out

  def units_per_example(self, batch) -> int:
    del batch
    return 1


# ---------------------------------------------------------------------------------------------- Curves.


def grad_ratio_curve(records) -> dict[str, list[float]] | None:
  """The fast-predictor / slow-encoder curve of one run: {'step', 'grad_ratio'} with grad_ratio =
  train/grad_norm/predictor / train/grad_norm/encoder at every logged step (each norm is the loop's mean over the
  steps since the previous log) from its metrics records (kexue_jax.metrics.read_metrics). None for an arm
  without a predictor (predictor='none': there is no fast variable, the ratio is undefined). A frozen predictor
  still has a gradient (it is zeroed after differentiation), so its arm has the curve too."""
  steps, ratios = [], []
  for rec in records:
    if "train/grad_norm/encoder" not in rec:
      continue
    if "train/grad_norm/predictor" not in rec:
      return None
    steps.append(int(rec["step"]))
    ratios.append(float(rec["train/grad_norm/predictor"]) / max(float(rec["train/grad_norm/encoder"]), 1e-30))
  return {"step": steps, "grad_ratio": ratios}
