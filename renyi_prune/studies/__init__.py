"""Studies built on the package and :mod:`renyi_prune.train`: :mod:`.accuracy` (criteria vs accuracy)."""
