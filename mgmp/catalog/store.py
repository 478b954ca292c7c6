"""A catalog directory: one ``NAME.safetensors`` fingerprint per base model and a ``catalog.json`` manifest that
records each one's sha256, description and hub aliases. The shipped catalog lies inside the package
(:data:`SHIPPED`); a user's own bases go to a private catalog (``$MGMP_CATALOG``, default ``~/.mgmp/catalog``)
or any directory given as ``--catalog DIR``.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mgmp._jsonio import write_json
from mgmp.catalog.fingerprint import SAMPLES, VERSION, Fingerprint, from_arrays, to_arrays
from model_pool.atomic import write_file
from model_pool.errors import BadInput, IntegrityError, first_line
from model_pool.guards import check_safetensors, load_json
from model_pool.hashing import sha256_file

MANIFEST = "catalog.json"
SHIPPED = Path(__file__).resolve().parent / "bases"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> None:
    if not NAME.match(name):
        raise BadInput(f"{name!r}: a catalog name is letters, digits, '.', '_' or '-' (at most 100)")


@dataclass(frozen=True)
class Entry:
    name: str
    file: str
    sha256: str
    what: str
    aliases: tuple[str, ...]
    source: str
    params: int
    tensors: int

    def answers_to(self, claim: str) -> bool:
        """A ``base_model`` claim names this base: its name or an alias, whole or as a hub name's last part."""
        wanted = {n.lower() for n in (self.name, *self.aliases)}
        return claim.lower() in wanted or claim.rsplit("/", 1)[-1].lower() in wanted


class Catalog:
    """The fingerprints in one directory (the manifest read once; fingerprints on demand, sha256-checked)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        f = self.root / MANIFEST
        manifest = load_json(f.read_bytes(), str(f)) if f.is_file() else {"version": VERSION, "entries": {}}
        if manifest.get("version") != VERSION or manifest.get("samples", SAMPLES) != SAMPLES:
            raise BadInput(f"{f}: catalog version {manifest.get('version')}; this mgmp reads version {VERSION}: "
                           "rebuild it with `mgmp catalog add`")
        self.entries = {n: Entry(name=n, **{**e, "aliases": tuple(e.get("aliases", ()))})
                        for n, e in manifest["entries"].items()}

    def __len__(self) -> int:
        return len(self.entries)

    def load(self, name: str) -> Fingerprint:
        from safetensors import safe_open
        from safetensors.numpy import load_file

        entry = self.entries[name]
        f = self.root / entry.file
        if not f.is_file() or sha256_file(f) != entry.sha256:
            raise IntegrityError(f"{f}: missing or its sha256 does not match {MANIFEST}")
        check_safetensors(f)
        try:
            with safe_open(str(f), framework="numpy") as h:
                metadata = h.metadata() or {}
            return from_arrays(load_file(str(f)), metadata, str(f))
        except (OSError, ValueError, KeyError) as e:
            raise IntegrityError(f"{f}: not a fingerprint ({first_line(e)})") from None

    def add(self, name: str, fp: Fingerprint, what: str, aliases: list[str], source: str) -> Entry:
        """Write ``NAME.safetensors`` then the manifest, each atomically (a crash between leaves the old manifest,
        which does not name the new file)."""
        from safetensors.numpy import save_file

        check_name(name)
        if not fp.names:
            raise BadInput(f"{source}: no weight matrix to fingerprint")
        arrays, metadata = to_arrays(fp)
        file = self.root / f"{name}.safetensors"
        write_file(file, lambda tmp: save_file(arrays, tmp, metadata=metadata))
        entry = Entry(name, file.name, sha256_file(file), what, tuple(aliases), source, fp.params, len(fp.names))
        self.entries[name] = entry
        self._write_manifest()
        return entry

    def _write_manifest(self) -> None:
        entries = {n: {"file": e.file, "sha256": e.sha256, "what": e.what, "aliases": list(e.aliases),
                       "source": e.source, "params": e.params, "tensors": e.tensors}
                   for n, e in sorted(self.entries.items())}
        write_json(self.root / MANIFEST, {"version": VERSION, "samples": SAMPLES, "entries": entries,
                                          "updated": dt.date.today().isoformat()})

    def bytes(self) -> int:
        return sum((self.root / e.file).stat().st_size for e in self.entries.values()) + (self.root / MANIFEST).stat().st_size


def private_catalog() -> Path:
    """The user's own catalog: ``$MGMP_CATALOG``, default ``~/.mgmp/catalog``."""
    return Path(os.environ.get("MGMP_CATALOG") or Path.home() / ".mgmp" / "catalog")


def open_catalogs(extra: list[str] | None = None, shipped: bool = True) -> list[Catalog]:
    """The shipped catalog (unless ``shipped`` is False), the private one when it exists, and each directory of
    ``extra``; a name in two catalogs is refused (the answer would depend on their order)."""
    dirs = ([SHIPPED] if shipped else []) + [private_catalog()] * (private_catalog() / MANIFEST).is_file()
    dirs += [Path(d) for d in extra or [] if Path(d).resolve() not in {x.resolve() for x in dirs}]
    for d in extra or []:
        if not (Path(d) / MANIFEST).is_file():
            raise BadInput(f"{d}: not a catalog (no {MANIFEST}); make one with `mgmp catalog add --catalog {d}`")
    catalogs = [Catalog(d) for d in dirs]
    seen: dict[str, Path] = {}
    for c in catalogs:
        for name in c.entries:
            if name in seen:
                raise BadInput(f"base {name!r} is in two catalogs ({seen[name]} and {c.root}): rename one")
            seen[name] = c.root
    return catalogs
