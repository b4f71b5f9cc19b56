"""Makes the TAESD fixtures: a tiny random-weight diffusers AutoencoderTiny in the real layout
(madebyollin/taesd's, with 8 channels instead of 64) in tests/fixtures/models/taesd/, and
tests/fixtures/taesd_reference.safetensors with a latent batch and diffusers' decode of it.

Run with torch 2.15.0 and diffusers 0.42.1 installed (CPU, float32, 1 thread):
    python tests/tools/make_taesd_fixture.py

The latents are UNet-space latents, as a sampler makes them (TAESD's scaling_factor is 1.0:
diffusers decodes `latents / 1.0`); some exceed TAESD's soft clamp at +-3 on purpose, and the
latent size (12x10) is not a multiple of 8. `decoded` is the raw decoder output (about
[-1, 1], unclamped). The weights are He-initialised (so the signal neither dies nor explodes
through the ReLU blocks) and every bias is non-zero, so a missing, swapped or transposed
tensor changes the result.
"""
import math
import os

import torch
from diffusers import AutoencoderTiny
from safetensors.torch import save_file

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures")
torch.set_num_threads(1)
torch.manual_seed(20261130)

vae = AutoencoderTiny(
    encoder_block_out_channels=(8, 8, 8, 8),
    decoder_block_out_channels=(8, 8, 8, 8),
    num_encoder_blocks=(1, 3, 3, 3),
    num_decoder_blocks=(3, 3, 3, 1),
    latent_channels=4,
)
with torch.no_grad():
    for name, param in vae.named_parameters():
        if name.endswith("weight"):
            fan_in = param[0].numel()
            # The last convolution of each residual block is halved so the sum grows slowly.
            gain = 0.5 if name.endswith("conv.4.weight") else 1.0
            param.copy_(torch.randn_like(param) * gain * math.sqrt(2.0 / fan_in))
        else:
            param.copy_(torch.randn_like(param) * 0.1)
vae.eval()

latents = torch.randn(2, 4, 12, 10) * 2.0
# The last convolution is scaled so that the picture spreads over [0, 1] like a real one
# (few values clamped), keeping the signal of every layer above it visible in the output.
last = vae.decoder.layers[-1]
with torch.no_grad():
    raw = (vae.decode(latents).sample + 1) / 2
    scale = 0.2 / raw.std()
    last.weight.mul_(scale)
    last.bias.copy_((last.bias - raw.mean()) * scale + 0.5)

out_dir = os.path.join(FIXTURES, "models", "taesd")
vae.save_pretrained(out_dir)

with torch.no_grad():
    decoded = vae.decode(latents / vae.config.scaling_factor).sample
save_file(
    {"latents": latents.contiguous(), "decoded": decoded.contiguous()},
    os.path.join(FIXTURES, "taesd_reference.safetensors"),
)
clamped = ((decoded / 2 + 0.5) < 0) | ((decoded / 2 + 0.5) > 1)
print(
    "decoded", tuple(decoded.shape),
    "mean %.4f std %.4f min %.4f max %.4f clamped %.1f%%"
    % (decoded.mean(), decoded.std(), decoded.min(), decoded.max(), 100 * clamped.float().mean()),
)
print("latents beyond +-3: %.1f%%" % (100 * (latents.abs() > 3).float().mean()))
