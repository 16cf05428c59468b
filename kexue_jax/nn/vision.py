"""Vision models in one import: every model returns (logits or None, features) and takes
`train` (BatchNorm batch statistics / dropout).

  CNN1D    MNIST-1D 1-D CNN (cnn.py)            input [B, 40]
  ResNet   CIFAR ResNet-18 and friends (resnet.py)  input [B, 32, 32, 3]
  ViT      ViT with 2D RoPE (vit.py)              input [B, H, W, C]
"""
from kexue_jax.nn.cnn import CNN1D
from kexue_jax.nn.resnet import BasicBlock, ResNet, ResNet18
from kexue_jax.nn.vit import ViT, patch_grid_positions

__all__ = ["CNN1D", "BasicBlock", "ResNet", "ResNet18", "ViT", "patch_grid_positions"]
