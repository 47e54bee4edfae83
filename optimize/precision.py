"""One numeric contract per package: a row's score does not depend on the batch it lands in.

A package declares one ``precision``. The server may pick, per batch-size bucket, only
variants of that precision's family, and every backend it picks must reproduce the package's
reference scores (``optimize.reference``) within ``SCORE_TOLERANCE`` alone and in every
bucket size, or it is refused at load. So whichever bucket the micro-batcher puts a
transaction in, its score moves by at most the tolerance.

- ``fp32``: the exported graph, its offline-optimised form and the fused form compute the same
  function in float32 (each held to the fp32 parity limit against PyTorch at build).
- ``fp16`` / ``int8_static``: a reduced precision, allowed only as the package's single
  precision for every batch size, chosen at optimise time and passed by the accuracy guard.
- ``int8_dynamic`` is never a serving precision: it quantises activations with scales computed
  from each batch, so a row's score depends on the other rows of its batch.
"""

from __future__ import annotations

from collections.abc import Iterable

SCORE_TOLERANCE = 1e-5  # largest |score - reference| any served backend may show, any batch
FAMILIES: dict[str, tuple[str, ...]] = {
    "fp32": ("fp32", "ort_opt", "fused"),
    "fp16": ("fp16",),
    "int8_static": ("int8_static",),
}
PRECISIONS = tuple(FAMILIES)
BATCH_DEPENDENT = ("int8_dynamic",)


def served_variants(precision: str, accepted: Iterable[str]) -> list[str]:
    """The accepted variants a package of ``precision`` may serve, in the family's order."""
    if precision not in FAMILIES:
        raise ValueError(f"precision {precision!r}; expected one of {PRECISIONS}")
    have = set(accepted)
    return [v for v in FAMILIES[precision] if v in have]
