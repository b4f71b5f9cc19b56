"""Makes tests/fixtures/sdxl/lora: tiny random LoRAs for the tiny SDXL folder
(tests/fixtures/sdxl/models/sdxl) and what stock diffusers 0.42.1 (CPU, float32, 1 thread) makes
with them: StableDiffusionXLPipeline `load_lora_weights` + `set_adapters(..., [0.8])`.

Run with torch 2.15, diffusers 0.42.1, transformers 5.24 and peft installed (as
tests/tools/make_lora_cases.py), from any folder.

The files (rank 2, a selection of layers, so the folder stays small):
- kohya.safetensors: `lora_unet_<diffusers module>`, `lora_te1_<module>` (CLIP ViT-L) and
  `lora_te2_<module>` (the second encoder) with `.lora_down`, `.lora_up` and `.alpha` (alpha 1).
- kohya_ldm.safetensors: its UNet layers named after SDXL's original (SGM) UNet
  (`lora_unet_input_blocks_4_1_transformer_blocks_0_...`), which diffusers maps with the UNet config.
- peft.safetensors: diffusers' own format (`unet.`, `text_encoder.`, `text_encoder_2.` with
  `lora_A`/`lora_B`), saved by `save_lora_weights` with its adapter metadata (lora_alpha 2 on rank 4).

Each case is prompt 'a photo of a cat', negative_prompt None (SDXL's zeros), Euler 4 steps, cfg 6,
64x64, seed 42; out/<name>.png and cases.json (the settings) are written beside the files.
"""
import json, os
import numpy as np, torch
from PIL import Image
from safetensors.torch import load_file, save_file
from diffusers import StableDiffusionXLPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
import transformers.integrations.peft

# As make_lora_cases.py: the package index ends at peft 0.21.2, whose LoRA layers are 0.22's.
transformers.integrations.peft.MIN_PEFT_VERSION = '0.21.0'

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures')
MODEL = os.path.join(FIX, 'sdxl', 'models', 'sdxl')
OUT = os.path.join(FIX, 'sdxl', 'lora')
torch.set_num_threads(1)
UNET = load_file(MODEL + '/unet/diffusion_pytorch_model.safetensors')
TEXT = {1: load_file(MODEL + '/text_encoder/model.safetensors'),
        2: load_file(MODEL + '/text_encoder_2/model.safetensors')}
STRENGTH = 0.8
LAYERS_PER_BLOCK = 2

KOHYA_UNET = sorted(k[:-len('.weight')] for k in UNET
                    if k.endswith(('attn1.to_q.weight', 'attn2.to_k.weight', 'attn2.to_out.0.weight',
                                   'ff.net.2.weight')))
# Feed-forward layers only: diffusers 0.42.1 turns kohya's text encoder attention layers into
# its old `to_q_lora` names, which transformers 5 then drops as unexpected keys (the PEFT file
# covers the attention layers).
TEXT_MODULES = [f'text_model.encoder.layers.{i}.{m}' for i in range(2) for m in ('mlp.fc1', 'mlp.fc2')]


def text_weight(index, module):
    weights = TEXT[index]
    return weights.get(module + '.weight', weights.get(module[len('text_model.'):] + '.weight'))


def lora_pair(generator, weight, rank, scale):
    """down, up with up·down as spread as the weight itself (after `scale`)."""
    out_dim, in_dim = weight.shape[:2]
    down = torch.randn((rank, in_dim), generator=generator) / np.sqrt(in_dim)
    spread = weight.std().item() * np.sqrt(in_dim) / (np.sqrt(rank) * scale)
    up = torch.randn((out_dim, rank), generator=generator) * spread
    return down, up


def to_sgm(module):
    """SDXL's original UNet name of a diffusers attention module (its block layout: no attention
    in the first down block and the last up block)."""
    parts = module.split('.')
    if parts[0] == 'mid_block':
        return '.'.join(['middle_block.1'] + parts[3:])
    i, j, rest = int(parts[1]), int(parts[3]), parts[4:]
    per_block = LAYERS_PER_BLOCK + 1
    if parts[0] == 'down_blocks':
        block = f'input_blocks.{i * per_block + j + 1}.1'
    else:
        block = f'output_blocks.{i * per_block + j}.1'
    return '.'.join([block] + rest)


def kohya_file(seed, ldm=False):
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    rank, alpha = 2, 1.0
    modules = [('lora_unet_', m, UNET[m + '.weight']) for m in KOHYA_UNET] + \
        [(f'lora_te{i}_', m, text_weight(i, m)) for i in (1, 2) for m in TEXT_MODULES]
    for prefix, module, weight in modules:
        down, up = lora_pair(generator, weight, rank, alpha / rank)
        if ldm and prefix == 'lora_unet_':
            module = to_sgm(module)
        name = prefix + module.replace('.', '_')
        tensors[name + '.lora_down.weight'] = down.contiguous()
        tensors[name + '.lora_up.weight'] = up.contiguous()
        tensors[name + '.alpha'] = torch.tensor(alpha)
    return tensors


def fill_lora_weights(model, generator):
    for module in model.modules():
        if hasattr(module, 'lora_A') and 'default' in getattr(module, 'lora_A', {}):
            down, up = lora_pair(generator, module.base_layer.weight, module.r['default'],
                                 module.scaling['default'])
            module.lora_A['default'].weight.data.copy_(down)
            module.lora_B['default'].weight.data.copy_(up)


def metadata(config):
    out = {}
    for key, value in config.to_dict().items():
        if key != 'base_model_name_or_path':
            out[key] = sorted(value) if isinstance(value, set) else value
    return out


def make_peft_file(path):
    pipe = StableDiffusionXLPipeline.from_pretrained(MODEL, add_watermarker=False)
    unet_config = LoraConfig(r=4, lora_alpha=2, init_lora_weights=False,
                             target_modules=['attn1.to_k', 'attn2.to_q', 'attn2.to_v', 'ff.net.0.proj'])
    text_configs = [LoraConfig(r=2, lora_alpha=alpha, init_lora_weights=False,
                               target_modules=[f'encoder.layers.{i}.{m}' for i in range(2)
                                               for m in ('self_attn.k_proj', 'self_attn.out_proj', 'mlp.fc2')])
                    for alpha in (2, 4)]
    pipe.unet.add_adapter(unet_config)
    pipe.text_encoder.add_adapter(text_configs[0])
    pipe.text_encoder_2.add_adapter(text_configs[1])
    generator = torch.Generator().manual_seed(41)
    for model in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2):
        fill_lora_weights(model, generator)
    StableDiffusionXLPipeline.save_lora_weights(
        os.path.dirname(path), weight_name=os.path.basename(path),
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
        text_encoder_2_lora_layers=get_peft_model_state_dict(pipe.text_encoder_2),
        unet_lora_adapter_metadata=metadata(unet_config),
        text_encoder_lora_adapter_metadata=metadata(text_configs[0]),
        text_encoder_2_lora_adapter_metadata=metadata(text_configs[1]))


COMMON = dict(prompt='a photo of a cat', negative_prompt=None, steps=4, cfg=6.0, width=64, height=64, seed=42)
CASES = [dict(name='none', lora=None), dict(name='kohya', lora='kohya.safetensors'),
         dict(name='kohya_ldm', lora='kohya_ldm.safetensors'), dict(name='peft', lora='peft.safetensors')]


@torch.no_grad()
def run(case):
    case = {**COMMON, **case, 'strength': STRENGTH}
    pipe = StableDiffusionXLPipeline.from_pretrained(MODEL, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    if case['lora']:
        pipe.load_lora_weights(OUT, weight_name=case['lora'], adapter_name='lora')
        pipe.set_adapters(['lora'], adapter_weights=[STRENGTH])
    generator = torch.Generator('cpu').manual_seed(case['seed'])
    image = pipe(prompt=case['prompt'], negative_prompt=case['negative_prompt'],
                 num_inference_steps=case['steps'], guidance_scale=case['cfg'], width=case['width'],
                 height=case['height'], generator=generator, output_type='np').images[0]
    pixels = (image * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(OUT, 'out', case['name'] + '.png'))
    return case, pixels.astype(np.float64)


def check_layers_loaded():
    """Every layer of each file went into diffusers' networks (none dropped as unexpected)."""
    for name in ('kohya.safetensors', 'peft.safetensors'):
        pipe = StableDiffusionXLPipeline.from_pretrained(MODEL, add_watermarker=False)
        pipe.load_lora_weights(OUT, weight_name=name, adapter_name='lora')
        loaded = sum(1 for model in (pipe.unet, pipe.text_encoder, pipe.text_encoder_2)
                     for module in model.modules() if hasattr(module, 'lora_A'))
        layers = {k.split('.lora')[0].removesuffix('.alpha') for k in load_file(os.path.join(OUT, name))}
        assert loaded == len(layers), (name, loaded, len(layers))


def main():
    os.makedirs(OUT + '/out', exist_ok=True)
    save_file(kohya_file(1), OUT + '/kohya.safetensors', metadata={'ss_network_module': 'networks.lora'})
    save_file(kohya_file(1, ldm=True), OUT + '/kohya_ldm.safetensors')
    make_peft_file(OUT + '/peft.safetensors')
    cases, images = {}, {}
    for case in CASES:
        cases[case['name']], images[case['name']] = run(case)
        print(case['name'], 'mean |diff| from no LoRA:', np.abs(images[case['name']] - images['none']).mean())
    for name in ('kohya', 'peft'):
        # A LoRA that hardly moves the picture would make the parity tests weak.
        assert np.abs(images[name] - images['none']).mean() > 3, name
    print('kohya_ldm vs kohya max |diff|:', np.abs(images['kohya_ldm'] - images['kohya']).max())
    check_layers_loaded()
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump(cases, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
