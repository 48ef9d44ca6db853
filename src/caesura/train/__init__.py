"""Training recipe of the end-of-turn model (extra ``caesura[train]``).

``python -m caesura.train --data ../shared/data`` trains, validates, exports and writes the
bundled assets. Importing this package is cheap: torch is only imported by the submodules
that need it (:mod:`caesura.train.model`, :mod:`caesura.train.loop`,
:mod:`caesura.train.export`). :mod:`caesura.train.switchboard` is stdlib-only and is what the
benchmarks use to extract END / HOLD decision points.
"""

from __future__ import annotations

__all__ = ["PRECISIONS"]

#: Training precisions (``--precision``): float32, bfloat16 autocast, or bf16 where the
#: hardware computes it natively (:func:`caesura.train.loop.resolve_precision`).
PRECISIONS = ("auto", "bf16", "fp32")
