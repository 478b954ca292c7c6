"""``mgmp model import SRC --from FAMILY[:ARCH] ... --out DIR``: bring a model built elsewhere into mgmp (``--from peft
--base DIR``: a LoRA adapter merged into an mgmp causal LM)."""
from __future__ import annotations

from rich.console import Console

from model_pool.model_import import import_model_dir


def import_(args) -> dict:
    card = import_model_dir(args.src, args.source, args.out, num_classes=args.num_classes, input_spec=args.input,
                            normalize=args.normalize, data=args.data, classifier=args.classifier,
                            task=args.task, base=args.base)
    Console().print(f"imported {args.src} as {card.arch} ({card.num_classes} classes, input {card.input['kind']}"
                    f"{' ' + str(card.input.get('shape')) if card.input.get('shape') else ''}"
                    f"{', data ' + args.data if args.data else ''}"
                    f"{', adapter merged into ' + str(args.base) if args.base else ''}) -> {args.out}")
    return {"out": str(args.out), **card.__dict__}
