"""``python -m renyi_prune.bench.static``: the static kernel report (:func:`.cli.main`'s options)."""

import sys

from .. import _common
from .cli import build_parser, run

if __name__ == "__main__":
    sys.exit(_common.main(build_parser("python -m renyi_prune.bench.static"), run, None))
