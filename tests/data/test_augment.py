"""kexue_jax/data/augment.py: the pure-JAX views (MNIST-1D and CIFAR) against NumPy / colorsys references and
their invariants (shapes, ranges, flip is a flip, identity settings, independence across examples)."""
import colorsys

import jax
import jax.numpy as jnp
import numpy as np

from kexue_jax.data import augment


def test_circular_shift_is_roll():
  x = np.arange(10.0)
  for s in (-3, 0, 4, 12):
    np.testing.assert_array_equal(augment.circular_shift(jnp.asarray(x), s), np.roll(x, s))


def test_mnist1d_augment_matches_its_formula():
  """x'_t = x_{(t - s) mod L} + a (t - (L - 1)/2) + b + eps_t with the parameters drawn from the same key."""
  x = np.random.default_rng(0).normal(size=40).astype(np.float32)
  key = jax.random.key(5)
  out = np.asarray(augment.mnist1d_augment(key, jnp.asarray(x), maxshift=10, slope_std=0.04, offset_std=0.3,
                                           noise_std=0.0))
  k_shift, k_slope, k_offset, _ = jax.random.split(key, 4)
  s = int(jax.random.randint(k_shift, (), -10, 11))
  a = 0.04 * float(jax.random.normal(k_slope, ()))
  b = 0.3 * float(jax.random.normal(k_offset, ()))
  ref = np.roll(x, s) + a * (np.arange(40) - 19.5) + b
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  ident = augment.mnist1d_augment(key, jnp.asarray(x), maxshift=0, slope_std=0.0, offset_std=0.0, noise_std=0.0)
  np.testing.assert_array_equal(np.asarray(ident), x)


def test_mnist1d_views_are_independent_per_example_and_key():
  x = jnp.tile(jnp.asarray(np.random.default_rng(1).normal(size=(1, 40)), jnp.float32), (64, 1))
  v1 = np.asarray(augment.mnist1d_views(jax.random.key(0), x))
  v2 = np.asarray(augment.mnist1d_views(jax.random.key(1), x))
  assert v1.shape == (64, 40) and v1.dtype == np.float32
  assert len({tuple(np.round(r, 4)) for r in v1}) == 64  # identical inputs, different views
  assert np.abs(v1 - v2).max() > 0.1
  np.testing.assert_array_equal(v1, np.asarray(augment.mnist1d_views(jax.random.key(0), x)))  # deterministic
  # Shifts cover [-10, 10]: the circular cross-correlation peak of view vs input (noise off).
  shifts = set()
  for k in range(64):
    v = np.asarray(augment.mnist1d_augment(jax.random.key(k), x[0], slope_std=0.0, offset_std=0.0, noise_std=0.0))
    shifts.add(int(next(s for s in range(-10, 11) if np.allclose(np.roll(np.asarray(x[0]), s), v))))
  assert min(shifts) >= -10 and max(shifts) <= 10 and len(shifts) > 10


def np_bilinear(img, ys, xs):
  """Bilinear sample of img[H, W, C] at real coordinates (pixel centres at integers), edges clamped."""
  h, w = img.shape[:2]
  out = np.zeros((len(ys), len(xs), img.shape[2]))
  for i, y in enumerate(ys):
    for j, x in enumerate(xs):
      y0, x0 = int(np.floor(y)), int(np.floor(x))
      fy, fx = y - y0, x - x0
      acc = 0.0
      for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
          acc = acc + wy * wx * img[min(max(y0 + dy, 0), h - 1), min(max(x0 + dx, 0), w - 1)]
      out[i, j] = acc
  return out


def test_resized_crop_matches_numpy_bilinear():
  img = np.random.default_rng(2).uniform(size=(8, 8, 3)).astype(np.float32)
  full = augment.resized_crop(jnp.asarray(img), (0.0, 0.0, 1.0, 1.0), (8, 8))
  np.testing.assert_allclose(full, img, atol=1e-6)  # the whole image at its own size is the identity
  box = (0.25, 0.5, 0.5, 0.5)  # rows 2..6, columns 4..8, upsampled 2x
  out = np.asarray(augment.resized_crop(jnp.asarray(img), box, (8, 8)))
  ys = 0.25 * 8 + (np.arange(8) + 0.5) * 0.5 - 0.5  # x0 H + (o + 1/2) h H / H' - 1/2
  xs = 0.5 * 8 + (np.arange(8) + 0.5) * 0.5 - 0.5
  interior = (slice(1, 7), slice(1, 7))  # away from the image border (edge handling differs at the border)
  np.testing.assert_allclose(out[interior], np_bilinear(img, ys, xs)[interior], atol=1e-5)


def test_random_crop_box_ranges():
  boxes = np.array([[float(v) for v in augment.random_crop_box(jax.random.key(i))] for i in range(200)])
  y0, x0, h, w = boxes.T
  assert (h <= 1).all() and (w <= 1).all() and (y0 >= 0).all() and (x0 >= 0).all()
  assert (y0 + h <= 1 + 1e-6).all() and (x0 + w <= 1 + 1e-6).all()
  area = h * w
  assert area.min() >= 0.2 * 0.74 and area.max() <= 1.0 and area.std() > 0.1  # clipping can shrink the area


def test_colour_ops_match_references():
  rng = np.random.default_rng(3)
  rgb = rng.uniform(size=(50, 3)).astype(np.float32)
  rgb[0] = [0.5, 0.5, 0.5]  # grey: hue and saturation 0
  rgb[1] = [0.0, 0.0, 0.0]
  hsv = np.asarray(augment.rgb_to_hsv(jnp.asarray(rgb)))
  ref = np.array([colorsys.rgb_to_hsv(*map(float, c)) for c in rgb])
  np.testing.assert_allclose(hsv, ref, atol=1e-5)
  back = np.asarray(augment.hsv_to_rgb(jnp.asarray(ref, jnp.float32)))
  np.testing.assert_allclose(back, np.array([colorsys.hsv_to_rgb(*h) for h in ref]), atol=1e-5)
  np.testing.assert_allclose(back, rgb, atol=1e-5)
  img = jnp.asarray(rng.uniform(size=(4, 4, 3)), jnp.float32)
  gray = np.asarray(augment.grayscale(img))
  np.testing.assert_allclose(gray[..., 0], np.asarray(img) @ np.array([0.299, 0.587, 0.114]), rtol=1e-5)
  for fn in (augment.adjust_brightness, augment.adjust_contrast, augment.adjust_saturation):
    np.testing.assert_allclose(fn(img, 1.0), img, atol=1e-6)  # factor 1: identity
    out = np.asarray(fn(img, 1.4))
    assert out.min() >= 0 and out.max() <= 1
  np.testing.assert_allclose(augment.adjust_hue(img, 0.0), img, atol=1e-5)
  np.testing.assert_allclose(augment.adjust_saturation(img, 0.0), np.repeat(gray, 3, -1), atol=1e-6)
  hue = np.asarray(augment.adjust_hue(img, 0.25))
  expected = np.array([colorsys.hsv_to_rgb((h + 0.25) % 1, s, v) for h, s, v in
                       (colorsys.rgb_to_hsv(*map(float, c)) for c in np.asarray(img).reshape(-1, 3))])
  np.testing.assert_allclose(hue.reshape(-1, 3), expected, atol=1e-5)


def test_flip_is_flip():
  img = jnp.asarray(np.random.default_rng(4).uniform(size=(5, 6, 3)), jnp.float32)
  np.testing.assert_array_equal(augment.flip_left_right(img), np.asarray(img)[:, ::-1])
  np.testing.assert_array_equal(augment.flip_left_right(augment.flip_left_right(img)), img)


def test_cifar_views_shapes_ranges_and_flip():
  hw = (12, 12)
  imgs = jnp.asarray(np.random.default_rng(5).uniform(size=(16,) + hw + (3,)), jnp.float32)
  v = np.asarray(augment.cifar_views(jax.random.key(0), imgs))
  assert v.shape == imgs.shape and v.dtype == np.float32 and v.min() >= 0 and v.max() <= 1
  assert np.abs(v - np.asarray(imgs)).max() > 0.05
  # Crop = the whole image, no jitter / grayscale: each view is the image or its mirror, about half flipped.
  plain = np.asarray(augment.cifar_views(jax.random.key(1), imgs, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                         jitter_prob=0.0, gray_prob=0.0))
  flipped = 0
  for a, x in zip(plain, np.asarray(imgs)):
    same, mirror = np.allclose(a, x, atol=1e-5), np.allclose(a, x[:, ::-1], atol=1e-5)
    assert same or mirror
    flipped += mirror and not same
  assert 2 <= flipped <= 14
  gray = np.asarray(augment.cifar_views(jax.random.key(2), imgs, gray_prob=1.0, jitter_prob=0.0))
  np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-6)
  np.testing.assert_allclose(gray[..., 1], gray[..., 2], atol=1e-6)
