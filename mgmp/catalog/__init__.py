"""A catalog of public base models' weight fingerprints, and ``scan``: which of them a model is built on."""
from mgmp.catalog.fingerprint import Fingerprint, fingerprint
from mgmp.catalog.scan import ScanResult, scan
from mgmp.catalog.store import SHIPPED, Catalog, open_catalogs

__all__ = ["SHIPPED", "Catalog", "Fingerprint", "ScanResult", "fingerprint", "open_catalogs", "scan"]
