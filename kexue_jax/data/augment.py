r"""Data augmentations in pure JAX (no TensorFlow), for views generated inside a jitted step.

Every public random function takes a key and a *batch* and draws independent parameters per example
(``jax.random.split(key, B)`` + ``vmap``), so two calls with different keys give two independent views of
the same batch (SimSiam, SimCLR, BYOL). Deterministic building blocks (``circular_shift``,
``resized_crop``, ``rgb_to_hsv`` ...) are exposed for tests.

MNIST-1D (signals x_BL; Greydanus, arXiv 2011.14439; after the mnist1d package's self-supervised
notebook, github.com/greydanus/mnist1d) -- ``mnist1d_views``:

    x'_t = x_{(t - s) mod L} + a (t - (L-1)/2) + b + eps_t
    s ~ U{-maxshift, ..., maxshift},  a ~ N(0, slope_std^2),  b ~ N(0, offset_std^2),  eps_t ~ N(0, noise_std^2)

(circular shift by s, random slope a per position, random offset b, iid noise).

CIFAR-10 (images x_BHWC in [0, 1]; SimSiam App. A / torchvision's recipe, without blur as in its CIFAR
experiments) -- ``cifar_views``:

    RandomResizedCrop(32, scale=(0.2, 1.0), ratio=(3/4, 4/3))  -> horizontal flip (p = 0.5)
    -> ColorJitter(brightness 0.4, contrast 0.4, saturation 0.4, hue 0.1) with p = 0.8
    -> grayscale with p = 0.2 -> clip to [0, 1]

* Random resized crop: area fraction s ~ U[scale], log aspect ratio ~ U[log ratio]; crop width / height
  (as fractions of the image) w = sqrt(s r), h = sqrt(s / r), clipped to 1 (torchvision retries 10 times
  and then falls back to a centre crop; we clip instead), top-left corner uniform over the valid range.
  The crop is resampled bilinearly to the output size with ``jax.image.scale_and_translate`` (pixel centres
  mapped exactly: output pixel o samples input coordinate x0 W + (o + 1/2) w W / W_out - 1/2).
* Colour jitter in torchvision's definitions, applied in the fixed order brightness, contrast, saturation,
  hue (torchvision draws a random order): brightness x f; contrast blend with the mean grey level of the
  image, f x + (1 - f) mean(gray); saturation blend with the grey image, f x + (1 - f) gray; hue: rotate the
  HSV hue by h ~ U[-0.1, 0.1] (in turns). Factors f ~ U[max(0, 1 - v), 1 + v]; each step clips to [0, 1].
  gray = 0.299 R + 0.587 G + 0.114 B (ITU-R 601-2 luma, torchvision's rgb_to_grayscale).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

# ----------------------------------------------------------------------------------------------- MNIST-1D.


def circular_shift(x_L, shift):
  """x'_t = x_{(t - shift) mod L} (jnp.roll with a traced shift, via a gather)."""
  length = x_L.shape[-1]
  idx = (jnp.arange(length) - shift) % length
  return x_L[..., idx]


def mnist1d_augment(key, x_L, *, maxshift: int = 10, slope_std: float = 0.04, offset_std: float = 0.3,
                    noise_std: float = 0.05):
  """One random view of one signal x_L (module docstring)."""
  k_shift, k_slope, k_offset, k_noise = jax.random.split(key, 4)
  length = x_L.shape[-1]
  s = jax.random.randint(k_shift, (), -maxshift, maxshift + 1)
  a = slope_std * jax.random.normal(k_slope, (), jnp.float32)
  b = offset_std * jax.random.normal(k_offset, (), jnp.float32)
  t = jnp.arange(length, dtype=jnp.float32) - (length - 1) / 2
  noise = noise_std * jax.random.normal(k_noise, x_L.shape, jnp.float32)
  return circular_shift(x_L.astype(jnp.float32), s) + a * t + b + noise


def mnist1d_views(key, x_BL, **kw):
  """A random view of every signal of the batch, parameters drawn independently per example."""
  keys = jax.random.split(key, x_BL.shape[0])
  return jax.vmap(lambda k, x: mnist1d_augment(k, x, **kw))(keys, x_BL)


# ----------------------------------------------------------------------------------------------- Images.


def resized_crop(image_HWC, box, out_hw):
  """Bilinear resample of the crop box = (y0, x0, h, w) (fractions of the image) to out_hw = (H', W')."""
  h_in, w_in = image_HWC.shape[0], image_HWC.shape[1]
  y0, x0, h, w = box
  scale = jnp.stack([out_hw[0] / (h * h_in), out_hw[1] / (w * w_in)])
  translation = -jnp.stack([y0 * h_in, x0 * w_in]) * scale
  out = jax.image.scale_and_translate(image_HWC.astype(jnp.float32), (out_hw[0], out_hw[1], image_HWC.shape[2]),
                                      (0, 1), scale, translation, method="linear", antialias=False)
  return out


def random_crop_box(key, *, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)):
  """(y0, x0, h, w) in image fractions: area s ~ U[scale], log aspect ~ U[log ratio] (module docstring)."""
  k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
  s = jax.random.uniform(k_area, (), minval=scale[0], maxval=scale[1])
  log_r = jax.random.uniform(k_ratio, (), minval=jnp.log(ratio[0]), maxval=jnp.log(ratio[1]))
  r = jnp.exp(log_r)
  w = jnp.minimum(jnp.sqrt(s * r), 1.0)
  h = jnp.minimum(jnp.sqrt(s / r), 1.0)
  y0 = jax.random.uniform(k_y, ()) * (1.0 - h)
  x0 = jax.random.uniform(k_x, ()) * (1.0 - w)
  return y0, x0, h, w


def flip_left_right(image_HWC):
  return image_HWC[:, ::-1, :]


def grayscale(image_HWC):
  """gray = 0.299 R + 0.587 G + 0.114 B, shape [H, W, 1]."""
  return jnp.tensordot(image_HWC, jnp.array([0.299, 0.587, 0.114], image_HWC.dtype), axes=1)[..., None]


def rgb_to_hsv(rgb):
  """[..., 3] RGB in [0, 1] -> HSV in [0, 1] (hue in turns), as Python's colorsys.rgb_to_hsv."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  maxc = jnp.max(rgb, axis=-1)
  minc = jnp.min(rgb, axis=-1)
  v = maxc
  delta = maxc - minc
  safe_max = jnp.where(maxc > 0, maxc, 1.0)
  s = jnp.where(maxc > 0, delta / safe_max, 0.0)
  safe_delta = jnp.where(delta > 0, delta, 1.0)
  rc, gc, bc = (maxc - r) / safe_delta, (maxc - g) / safe_delta, (maxc - b) / safe_delta
  h = jnp.where(r == maxc, bc - gc, jnp.where(g == maxc, 2.0 + rc - bc, 4.0 + gc - rc))
  h = jnp.where(delta > 0, (h / 6.0) % 1.0, 0.0)
  return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv):
  """Inverse of rgb_to_hsv (as colorsys.hsv_to_rgb)."""
  h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
  i = jnp.floor(h * 6.0)
  f = h * 6.0 - i
  p, q, t = v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f))
  i = i.astype(jnp.int32) % 6
  r = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [v, q, p, p, t], v)
  g = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [t, v, v, q, p], p)
  b = jnp.select([i == 0, i == 1, i == 2, i == 3, i == 4], [p, p, t, v, v], q)
  return jnp.stack([r, g, b], axis=-1)


def adjust_brightness(image, f):
  return jnp.clip(image * f, 0.0, 1.0)


def adjust_contrast(image, f):
  mean = jnp.mean(grayscale(image))
  return jnp.clip(f * image + (1.0 - f) * mean, 0.0, 1.0)


def adjust_saturation(image, f):
  return jnp.clip(f * image + (1.0 - f) * grayscale(image), 0.0, 1.0)


def adjust_hue(image, delta):
  hsv = rgb_to_hsv(image)
  hsv = hsv.at[..., 0].set((hsv[..., 0] + delta) % 1.0)
  return jnp.clip(hsv_to_rgb(hsv), 0.0, 1.0)


def color_jitter(key, image, *, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1):
  """torchvision ColorJitter (module docstring; fixed order)."""
  kb, kc, ks, kh = jax.random.split(key, 4)
  u = lambda k, v: jax.random.uniform(k, (), minval=max(0.0, 1.0 - v), maxval=1.0 + v)
  image = adjust_brightness(image, u(kb, brightness))
  image = adjust_contrast(image, u(kc, contrast))
  image = adjust_saturation(image, u(ks, saturation))
  return adjust_hue(image, jax.random.uniform(kh, (), minval=-hue, maxval=hue))


def cifar_augment(key, image_HWC, *, out_hw=None, crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3),
                  jitter_prob=0.8, gray_prob=0.2, jitter=(0.4, 0.4, 0.4, 0.1)):
  """One SimSiam/CIFAR view of one image in [0, 1] (module docstring)."""
  k_crop, k_flip, k_jit_on, k_jit, k_gray = jax.random.split(key, 5)
  out_hw = tuple(out_hw or image_HWC.shape[:2])
  x = resized_crop(image_HWC, random_crop_box(k_crop, scale=crop_scale, ratio=crop_ratio), out_hw)
  x = jnp.clip(x, 0.0, 1.0)
  x = jnp.where(jax.random.bernoulli(k_flip), flip_left_right(x), x)
  if x.shape[-1] == 3:
    b, c, s, h = jitter
    jittered = color_jitter(k_jit, x, brightness=b, contrast=c, saturation=s, hue=h)
    x = jnp.where(jax.random.bernoulli(k_jit_on, jitter_prob), jittered, x)
    x = jnp.where(jax.random.bernoulli(k_gray, gray_prob), jnp.broadcast_to(grayscale(x), x.shape), x)
  return x


def cifar_views(key, x_BHWC, **kw):
  """A random view of every image of the batch, parameters drawn independently per example."""
  keys = jax.random.split(key, x_BHWC.shape[0])
  return jax.vmap(lambda k, x: cifar_augment(k, x, **kw))(keys, x_BHWC)


VIEWS = {"mnist1d": mnist1d_views, "cifar": cifar_views}
