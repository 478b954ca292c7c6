"""Lineage forest recovery (``mgmp forest``, SPEC §12): candidates from the DNA indexes, relatedness from the
calibrated fused score, direction from asymmetric evidence, a maximum spanning arborescence; MoTHer's
weights-only rule as the baseline."""
from mgmp.forest.direction import MOTHER_RULE, DirectionModel
from mgmp.forest.mother import mother_forest
from mgmp.forest.recover import Edge, Forest, fit_direction, recover

__all__ = ["DirectionModel", "Edge", "Forest", "MOTHER_RULE", "fit_direction", "mother_forest", "recover"]
