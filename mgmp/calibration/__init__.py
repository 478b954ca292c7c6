"""Calibration, a stage of its own (``mgmp calibrate POOL``): decision thresholds of single scores and
fused models fit on a pool's calibration pairs, stored in the pool, read by ``mgmp score`` and queries."""
