"""Lineage forest recovery (``mgmp forest``, SPEC §12): candidates from the DNA indexes, the evidence that one
model is another's parent, a learned edge model, a maximum spanning arborescence; MoTHer's weights-only rule as
the baseline."""
from mgmp.forest.arborescence import Edge
from mgmp.forest.edges import EDGES_KEY, EdgeModel
from mgmp.forest.mother import mother_forest
from mgmp.forest.recover import Forest, fit_edges, recover, registered_edges

__all__ = ["EDGES_KEY", "Edge", "EdgeModel", "Forest", "fit_edges", "mother_forest", "recover", "registered_edges"]
