"""Writes tests/fixtures/bin: the reference IP-Adapter files as h94-style PyTorch `.bin`
pickles ({"image_proj": {...}, "ip_adapter": {...}}), as torch.save writes them."""
import os

import torch
from safetensors.torch import load_file

HERE = os.path.dirname(__file__)
SOURCE = os.path.join(HERE, "..", "fixtures", "models", "ip-adapter", "models")
TARGET = os.path.join(HERE, "..", "fixtures", "bin")

for name in ["ip-adapter_sd15", "ip-adapter-plus_sd15"]:
    flat = load_file(os.path.join(SOURCE, name + ".safetensors"))
    nested = {"image_proj": {}, "ip_adapter": {}}
    for key, tensor in flat.items():
        group, rest = key.split(".", 1)
        nested[group][rest] = tensor
    torch.save(nested, os.path.join(TARGET, name + ".bin"))
    print(name, len(flat))

# A minimal A1111-style checkpoint pickle: tensors under "state_dict", plus a non-tensor entry.
torch.save(
    {"state_dict": {"model.diffusion_model.out.2.bias": torch.arange(4, dtype=torch.float32)}, "global_step": 1},
    os.path.join(TARGET, "tiny_state_dict.ckpt"),
)
