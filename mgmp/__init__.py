"""mgmp: learned model provenance (Model DNA), lineage closeness, basin test and Zest."""

__version__ = "0.1.0"
