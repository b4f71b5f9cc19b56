"""Writes the tiny SDXL pipeline folder (tests/fixtures/sdxl/models/sdxl, made by
make_sdxl_cases.py) as one single-file checkpoint in Stability's `generative-models` layout, the
one A1111 and ComfyUI save SDXL in (issue #24): the UNet under `model.diffusion_model.` and the VAE
under `first_stage_model.` in LDM names, the first text encoder under
`conditioner.embedders.0.transformer.` in transformers' names, the second under
`conditioner.embedders.1.model.` in OpenCLIP's (q, k and v fused into `in_proj`, `text_projection`
stored [hidden, projection]), plus an unused `logit_scale` as real files carry.

The names come from this script's own mapping. To check it, the file is loaded back with
diffusers' own converter (`StableDiffusionXLPipeline.from_single_file`, configs from the folder)
and every tensor of every network must equal the folder's exactly. Run with torch 2.15,
diffusers 0.42.1 and transformers 5.24 (with the CUDA wheel of torch on a machine without CUDA:
LD_LIBRARY_PATH pointing at empty stand-ins for its libraries):

    python tests/tools/make_sdxl_single_file.py [FOLDER] [OUT]

FOLDER defaults to tests/fixtures/sdxl/models/sdxl, OUT to
tests/fixtures/sdxl/single_file/tiny_sdxl.safetensors.
"""

import json
import os
import sys

import torch
from diffusers import StableDiffusionXLPipeline
from safetensors.torch import load_file, save_file

RESNET_PARTS = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
VAE_ATTENTION_PARTS = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
OPEN_CLIP_LAYER_PARTS = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def replace_prefix(key, table):
    """`key` with its longest matching diffusers prefix swapped for the LDM one."""
    for diffusers in sorted(table, key=len, reverse=True):
        if key == diffusers or key.startswith(diffusers + "."):
            return table[diffusers] + key[len(diffusers) :]
    raise KeyError(key)


def with_resnet_parts(table, diffusers, ldm, parts):
    table[diffusers] = ldm
    for d, l in parts.items():
        table[f"{diffusers}.{d}"] = f"{ldm}.{l}"


def unet_table(config):
    layers = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    table = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
        "mid_block.attentions.0": "middle_block.1",
    }
    with_resnet_parts(table, "mid_block.resnets.0", "middle_block.0", RESNET_PARTS)
    with_resnet_parts(table, "mid_block.resnets.1", "middle_block.2", RESNET_PARTS)
    for i in range(levels):
        for j in range(layers):
            n = i * (layers + 1) + j + 1
            with_resnet_parts(table, f"down_blocks.{i}.resnets.{j}", f"input_blocks.{n}.0", RESNET_PARTS)
            table[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{n}.1"
        table[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (layers + 1)}.0.op"
        has_attention = "CrossAttn" in config["up_block_types"][i]
        for j in range(layers + 1):
            n = i * (layers + 1) + j
            with_resnet_parts(table, f"up_blocks.{i}.resnets.{j}", f"output_blocks.{n}.0", RESNET_PARTS)
            table[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{n}.1"
        slot = 2 if has_attention else 1
        table[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{i * (layers + 1) + layers}.{slot}.conv"
    return table


def vae_table(config):
    levels = len(config["block_out_channels"])
    layers = config["layers_per_block"]
    shortcut = {"conv_shortcut": "nin_shortcut"}
    table = {"quant_conv": "quant_conv", "post_quant_conv": "post_quant_conv"}
    for part in ("encoder", "decoder"):
        for name in ("conv_in", "conv_out"):
            table[f"{part}.{name}"] = f"{part}.{name}"
        table[f"{part}.conv_norm_out"] = f"{part}.norm_out"
        with_resnet_parts(table, f"{part}.mid_block.resnets.0", f"{part}.mid.block_1", shortcut)
        with_resnet_parts(table, f"{part}.mid_block.resnets.1", f"{part}.mid.block_2", shortcut)
        with_resnet_parts(table, f"{part}.mid_block.attentions.0", f"{part}.mid.attn_1", VAE_ATTENTION_PARTS)
    for i in range(levels):
        for j in range(layers):
            with_resnet_parts(table, f"encoder.down_blocks.{i}.resnets.{j}", f"encoder.down.{i}.block.{j}", shortcut)
        table[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = f"encoder.down.{i}.downsample.conv"
        level = levels - 1 - i
        for j in range(layers + 1):
            with_resnet_parts(table, f"decoder.up_blocks.{i}.resnets.{j}", f"decoder.up.{level}.block.{j}", shortcut)
        table[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = f"decoder.up.{level}.upsample.conv"
    return table


def vae_tensor(key, tensor):
    """LDM keeps the VAE attention's projections as 1x1 convolutions."""
    attention = ".mid_block.attentions.0.to_" in key and key.endswith(".weight")
    return tensor[:, :, None, None] if attention else tensor


def open_clip(weights):
    out = {}
    for key, tensor in weights.items():
        if key in OPEN_CLIP_TOP:
            out[OPEN_CLIP_TOP[key]] = tensor
        elif key == "text_projection.weight":
            out["text_projection"] = tensor.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            layer, part = key[len("text_model.encoder.layers.") :].split(".", 1)
            block = f"transformer.resblocks.{layer}."
            if part.startswith("self_attn.q_proj."):
                kind = part.rsplit(".", 1)[1]
                fused = [weights[f"text_model.encoder.layers.{layer}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
                out[f"{block}attn.in_proj_{kind}"] = torch.cat(fused, 0)
            elif not part.startswith(("self_attn.k_proj.", "self_attn.v_proj.")):
                out[block + replace_prefix(part, OPEN_CLIP_LAYER_PARTS)] = tensor
        else:
            raise KeyError(key)
    out["logit_scale"] = torch.tensor(4.6052)
    return out


def single_file(folder):
    def config(component):
        with open(os.path.join(folder, component, "config.json")) as f:
            return json.load(f)

    def weights(component, stem):
        return load_file(os.path.join(folder, component, f"{stem}.safetensors"))

    out = {}
    unet = unet_table(config("unet"))
    for key, tensor in weights("unet", "diffusion_pytorch_model").items():
        out["model.diffusion_model." + replace_prefix(key, unet)] = tensor
    vae = vae_table(config("vae"))
    for key, tensor in weights("vae", "diffusion_pytorch_model").items():
        out["first_stage_model." + replace_prefix(key, vae)] = vae_tensor(key, tensor)
    for key, tensor in weights("text_encoder", "model").items():
        name = key if key.startswith("text_model.") else "text_model." + key
        out["conditioner.embedders.0.transformer." + name] = tensor
    for key, tensor in open_clip(weights("text_encoder_2", "model")).items():
        out["conditioner.embedders.1.model." + key] = tensor
    return {k: v.contiguous() for k, v in out.items()}


def check_with_diffusers(path, folder):
    """diffusers' converter must give back every tensor of the folder, bit for bit."""
    pipe = StableDiffusionXLPipeline.from_single_file(
        path, config=folder, local_files_only=True, torch_dtype=torch.float32
    )
    for component, stem in [
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
        ("text_encoder_2", "model"),
    ]:
        expected = load_file(os.path.join(folder, component, f"{stem}.safetensors"))
        got = getattr(pipe, component).state_dict()
        assert set(got) == set(expected), (component, set(got) ^ set(expected))
        for key, tensor in expected.items():
            assert torch.equal(got[key], tensor), (component, key)
        print(f"{component}: {len(expected)} tensors equal")


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/sdxl/models/sdxl"
    out = sys.argv[2] if len(sys.argv) > 2 else "tests/fixtures/sdxl/single_file/tiny_sdxl.safetensors"
    os.makedirs(os.path.dirname(out), exist_ok=True)
    save_file(single_file(folder), out)
    check_with_diffusers(out, folder)
    print(f"{out}: {os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
