"""Why the paper configuration collapses on text: fit it briefly, then compare the generator's z with
the projected outputs and report the loss terms. Usage: python scripts/text_generator_check.py POOL
(POOL: the built topics pool, e.g. from `mgmp bench mgmp --domain text --pool POOL`)."""
import sys

import torch

from mgmp.bench.mgmp_table import DOMAINS, train_mgmp
from mgmp.learned.datamodule import ModelPoolDataModule

torch.set_num_threads(2)
_, generator, kwargs = DOMAINS["text"]
dm = ModelPoolDataModule(sys.argv[1], view="logits", episodes_per_epoch=30)
dm.setup()
model, trainer = train_mgmp(dm, {}, generator, kwargs, 2, 0)
print({k: round(float(v), 4) for k, v in trainer.callback_metrics.items()})
print("all parameters finite:", all(torch.isfinite(p).all() for p in model.parameters()))
batch = next(iter(dm.val_dataloader()))
with torch.no_grad():
    print("mean |z|", round(model.z(batch["x"]).abs().mean().item(), 3),
          "mean |view(y_s)|", round(model.view(batch["y_s"]).abs().mean().item(), 3))
    print("fragment probabilities", torch.sigmoid(model.fragment_logits(batch["x"], batch["y_s"], batch["y_t"]))[:5])
