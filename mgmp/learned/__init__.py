"""MGMP, learned provenance (SPEC §5): DNA generators, fragment assembly, the contrastive losses and
the provenance classifier as a LightningModule over a model-pool DataModule, its callbacks and CLI."""
