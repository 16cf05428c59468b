"""Published SimSiam numbers (Chen & He, arXiv 2011.10566, Table 1 and App. D), copied from the paper.

ImageNet linear
evaluation top-1 (%), ResNet-50, 100-epoch pre-training.
"""

# Our variant name -> (the paper's row, top-1 %, what the paper says happened).
ABLATION = {
    "simsiam": ("w/ stop-grad, predictor lr decayed (Fig. 2: 5 trials; Table 1 baseline 67.7)", "67.7 ± 0.1",
                "no collapse; output std ≈ 1/√d"),
    "no_stopgrad": ("w/o stop-grad (Fig. 2)", "0.1", "collapse: loss → −1 at once, output std → 0"),
    "no_predictor": ("no predictor MLP, h = identity (Table 1a)", "0.1", "collapse"),
    "frozen_predictor": ("predictor fixed at random init (Table 1b)", "1.5",
                         "not a collapse: training does not converge, loss stays high"),
    "constlr_predictor": ("predictor lr not decayed (Table 1c)", "68.1", "used as the default afterwards"),
    "headbn_none": ("no BN in the MLP heads (Table 3a)", "34.6", "not a collapse: an optimisation difficulty"),
    "headbn_hidden": ("BN on hidden layers only (Table 3b)", "67.4", "close to the default"),
    "headbn_all": ("BN also on the predictor output (Table 3d)", "unstable", "loss oscillates; not a collapse"),
    "simclr": ("SimCLR, same 100-epoch setting (Table 4; repro.+)", "66.5", "CIFAR-10 (App. D): 91.1 vs SimSiam 91.8"),
}
BYOL_RANDOM_INIT_LINEAR = 1.4  # BYOL (arXiv 2006.07733): a randomly initialised ResNet-50, ImageNet linear eval
