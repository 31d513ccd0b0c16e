"""Studies built on the package and :mod:`renyi_prune.train`: :mod:`.accuracy` (criteria vs accuracy),
:mod:`.probe` (linear probe and k-NN of a pruned pretrained ViT, training-free)."""
