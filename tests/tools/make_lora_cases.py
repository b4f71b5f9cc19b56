"""Makes tests/fixtures/lora: tiny random LoRA files for the tiny reference models, in the formats
users have (kohya with diffusers-style and LDM-style module names, LoCon convolutions, diffusers/PEFT
with its adapter metadata, an f16 file, a LoHa file Minus refuses), and what stock diffusers 0.42.1
(CPU, float32, 1 thread) makes with them: `load_lora_weights` + `set_adapters(..., adapter_weights)`.

Run with torch 2.15, diffusers 0.42.1, transformers 5.24 and peft installed
(`pip install --no-deps peft accelerate` + `pip install psutil`; see MIN_PEFT_VERSION below), from any folder.

What the files hold (rank 2-4, a selection of layers, so the whole folder stays small):
- kohya.safetensors: `lora_unet_<diffusers module>` and `lora_te_<module>` with `.lora_down`,
  `.lora_up` and `.alpha` (rank 2, alpha 1: scale 1/2), attention, feed-forward and text encoder layers.
- kohya_ldm.safetensors: the same tensors named after the original LDM UNet
  (`lora_unet_input_blocks_1_1_...`): diffusers reads those for SD 1.5 only when handed the UNet
  config, so the test checks Minus gives it the same picture as kohya.safetensors.
- kohya_f16.safetensors: kohya.safetensors stored in float16.
- locon.safetensors: kohya LoCon: 3x3 convolutions (down 3x3, up 1x1), 1x1 convolutions, strided
  down-sampling and up-sampling convolutions, a time-embedding linear layer.
- locon_ldm.safetensors: locon.safetensors with LDM names (`in_layers_2`, `op`, `skip_connection`...).
- peft.safetensors: diffusers' own format (`unet.<module>.lora_A.weight`, `text_encoder....lora_B`),
  saved by `save_lora_weights` with its adapter metadata (r 4, lora_alpha 2, one alpha_pattern entry).
- loha.safetensors: a LyCORIS LoHa (`hada_w1_a`...), which Minus refuses by name.

Each case writes out/<name>.png (batch item 0) and its settings into cases.json, beside each file's
"addnet" hash as A1111 computes it (sha256 of the bytes after the safetensors header; A1111's
`Lora hashes` shows its first 12 digits).
"""
import hashlib, json, os
import numpy as np, torch
from PIL import Image
from safetensors.torch import load_file, save_file
from diffusers import DDIMScheduler, StableDiffusionPipeline
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
import transformers.integrations.peft
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

# transformers 5.24 asks for peft >= 0.22 before it lets diffusers put a LoRA on the text encoder;
# the package index here ends at 0.21.2, whose LoRA layers are the ones 0.22 has. The parity tests
# check the result: a text-encoder LoRA that went in wrong would not match Minus' merge.
transformers.integrations.peft.MIN_PEFT_VERSION = '0.21.0'

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures')
OUT = os.path.join(FIX, 'lora')
torch.set_num_threads(1)
UNET = load_file(FIX + '/models/sd15/unet/diffusion_pytorch_model.safetensors')
TEXT = load_file(FIX + '/models/sd15/text_encoder/model.safetensors')
LAYERS_PER_BLOCK = 2

# The layers each file changes (diffusers module names).
ATTENTIONS = [f'down_blocks.{i}.attentions.{j}' for i in range(3) for j in range(2)] + \
    [f'up_blocks.{i}.attentions.{j}' for i in range(1, 4) for j in range(3)] + ['mid_block.attentions.0']
KOHYA_UNET = [f'{a}.transformer_blocks.0.{m}' for a in ATTENTIONS
              for m in ('attn1.to_q', 'attn2.to_v', 'attn2.to_out.0', 'ff.net.2')]
KOHYA_TEXT = [f'text_model.encoder.layers.{i}.{m}' for i in range(2)
              for m in ('self_attn.q_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1')]
LOCON_UNET = ['down_blocks.1.resnets.0.conv1', 'down_blocks.1.resnets.0.conv_shortcut',
              'down_blocks.0.downsamplers.0.conv', 'up_blocks.2.resnets.1.conv2', 'up_blocks.1.upsamplers.0.conv',
              'up_blocks.3.resnets.2.conv_shortcut', 'mid_block.resnets.0.time_emb_proj',
              'up_blocks.3.attentions.0.proj_in', 'down_blocks.2.attentions.1.proj_out']
PEFT_UNET = ['attn1.to_k', 'attn2.to_q', 'attn1.to_out.0']
PEFT_TEXT = ['self_attn.k_proj', 'self_attn.out_proj', 'mlp.fc2']


def base_weight(module):
    if module.startswith('text_model.'):
        return TEXT[module[len('text_model.'):] + '.weight']
    return UNET[module + '.weight']


def lora_pair(generator, weight, rank, scale):
    """down, up with up·down as spread as the weight itself (after `scale`)."""
    out_dim, in_dim = weight.shape[:2]
    kernel = weight.shape[2:]
    down = torch.randn((rank, in_dim, *kernel), generator=generator) / np.sqrt(in_dim * max(1, kernel.numel()))
    spread = weight.std().item() * np.sqrt(in_dim * max(1, kernel.numel())) / (np.sqrt(rank) * scale)
    up = torch.randn((out_dim, rank, *([1] * len(kernel))), generator=generator) * spread
    return down, up


RESNET_PARTS = {'conv1': 'in_layers.2', 'conv2': 'out_layers.3', 'time_emb_proj': 'emb_layers.1',
                'conv_shortcut': 'skip_connection'}


def to_ldm(module):
    """The original LDM UNet's name of a diffusers module name (SD 1.5 block layout)."""
    parts = module.split('.')
    if parts[0] == 'mid_block':
        kind, j, rest = parts[1], int(parts[2]), parts[3:]
        block = 'middle_block.1' if kind == 'attentions' else f'middle_block.{2 * j}'
    else:
        i, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        per_block = LAYERS_PER_BLOCK + 1
        if kind == 'downsamplers':
            return f'input_blocks.{(i + 1) * per_block}.0.op'
        if kind == 'upsamplers':
            # up_blocks.0 has no attention, so its up-sampler is the block's second module.
            return f'output_blocks.{i * per_block + LAYERS_PER_BLOCK}.{2 if i > 0 else 1}.conv'
        if parts[0] == 'down_blocks':
            block = f'input_blocks.{i * per_block + j + 1}'
        else:
            block = f'output_blocks.{i * per_block + j}'
        block += '.0' if kind == 'resnets' else '.1'
    if kind == 'resnets':
        rest = [RESNET_PARTS[rest[0]]]
    return '.'.join([block] + rest)


def kohya_file(unet_modules, text_modules, rank, alpha, seed, ldm=False):
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for module in unet_modules + text_modules:
        down, up = lora_pair(generator, base_weight(module), rank, alpha / rank)
        if module.startswith('text_model.'):
            name = 'lora_te_' + module.replace('.', '_')
        else:
            name = 'lora_unet_' + (to_ldm(module) if ldm else module).replace('.', '_')
        tensors[name + '.lora_down.weight'] = down.contiguous()
        tensors[name + '.lora_up.weight'] = up.contiguous()
        tensors[name + '.alpha'] = torch.tensor(float(alpha))
    return tensors


def fill_lora_weights(model, generator, scales):
    """Random lora_A/lora_B of a model's PEFT layers, with the layers' own scales."""
    for name, module in model.named_modules():
        if hasattr(module, 'lora_A') and 'default' in getattr(module, 'lora_A', {}):
            weight = module.base_layer.weight
            down, up = lora_pair(generator, weight, module.r['default'], module.scaling['default'])
            module.lora_A['default'].weight.data.copy_(down.reshape(module.lora_A['default'].weight.shape))
            module.lora_B['default'].weight.data.copy_(up.reshape(module.lora_B['default'].weight.shape))
            scales[name] = module.scaling['default']


def metadata(config):
    """A LoraConfig as diffusers' trainers hand it to save_lora_weights (without the model's local path)."""
    out = {}
    for key, value in config.to_dict().items():
        if key == 'base_model_name_or_path':
            continue
        out[key] = sorted(value) if isinstance(value, set) else value
    return out


def make_peft_file(path):
    pipe = StableDiffusionPipeline.from_pretrained(FIX + '/models/sd15', safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    unet_targets = [f'{a}.transformer_blocks.0.{m}' for a in ATTENTIONS for m in PEFT_UNET] + \
        ['mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj', 'up_blocks.1.attentions.2.proj_out']
    unet_config = LoraConfig(r=4, lora_alpha=2, target_modules=unet_targets, init_lora_weights=False,
                             alpha_pattern={'mid_block.attentions.0.transformer_blocks.0.attn2.to_q': 8})
    text_config = LoraConfig(r=2, lora_alpha=2, init_lora_weights=False,
                             target_modules=[f'encoder.layers.{i}.{m}' for i in range(2) for m in PEFT_TEXT])
    pipe.unet.add_adapter(unet_config)
    pipe.text_encoder.add_adapter(text_config)
    generator = torch.Generator().manual_seed(41)
    scales = {}
    fill_lora_weights(pipe.unet, generator, scales)
    fill_lora_weights(pipe.text_encoder, generator, scales)
    assert scales['mid_block.attentions.0.transformer_blocks.0.attn2.to_q'] == 2.0, scales
    StableDiffusionPipeline.save_lora_weights(
        os.path.dirname(path), weight_name=os.path.basename(path),
        unet_lora_layers=get_peft_model_state_dict(pipe.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(pipe.text_encoder),
        unet_lora_adapter_metadata=metadata(unet_config),
        text_encoder_lora_adapter_metadata=metadata(text_config))


def make_loha_file(path):
    generator = torch.Generator().manual_seed(5)
    name = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q'
    tensors = {f'{name}.{part}': torch.randn(shape, generator=generator)
               for part, shape in (('hada_w1_a', (32, 2)), ('hada_w1_b', (2, 32)),
                                   ('hada_w2_a', (32, 2)), ('hada_w2_b', (2, 32)))}
    tensors[f'{name}.alpha'] = torch.tensor(2.0)
    save_file(tensors, path)


def make_files():
    os.makedirs(OUT + '/out', exist_ok=True)
    kohya = kohya_file(KOHYA_UNET, KOHYA_TEXT, rank=2, alpha=1.0, seed=1)
    save_file(kohya, OUT + '/kohya.safetensors', metadata={'ss_network_module': 'networks.lora'})
    save_file(kohya_file(KOHYA_UNET, KOHYA_TEXT, rank=2, alpha=1.0, seed=1, ldm=True),
              OUT + '/kohya_ldm.safetensors')
    save_file({k: v.half() for k, v in kohya_file(KOHYA_UNET, KOHYA_TEXT, rank=2, alpha=1.0, seed=3).items()},
              OUT + '/kohya_f16.safetensors')
    save_file(kohya_file(LOCON_UNET, [], rank=2, alpha=2.0, seed=2), OUT + '/locon.safetensors')
    save_file(kohya_file(LOCON_UNET, [], rank=2, alpha=2.0, seed=2, ldm=True), OUT + '/locon_ldm.safetensors')
    make_peft_file(OUT + '/peft.safetensors')
    make_loha_file(OUT + '/loha.safetensors')


COMMON = dict(steps=6, cfg=7.5, width=64, height=64, prompt='a red house', negative_prompt='')
CASES = [
    dict(name='none', loras=[], seed=3),
    dict(name='kohya', loras=[('kohya.safetensors', 1.0)], seed=3),
    dict(name='kohya_f16', loras=[('kohya_f16.safetensors', 1.0)], seed=3),
    dict(name='locon', loras=[('locon.safetensors', 1.0)], seed=3),
    dict(name='peft', loras=[('peft.safetensors', 1.0)], seed=3),
    dict(name='two', loras=[('kohya.safetensors', 0.8), ('peft.safetensors', -0.5)], seed=3),
    dict(name='posneg', loras=[('kohya.safetensors', 0.7)], seed=5, adapter='ip-adapter_sd15.safetensors',
         image='house.png', negative_image='lawn.png', prompt=''),
]

processor = CLIPImageProcessorPil()
encoder = CLIPVisionModelWithProjection.from_pretrained(FIX + '/models/ip-adapter/models/image_encoder')


def image_embeds(name):
    pixels = processor(images=Image.open(os.path.join(FIX, 'images', name)), return_tensors='pt').pixel_values
    with torch.no_grad():
        return encoder(pixels).image_embeds


def run(case):
    case = {**COMMON, **case}
    pipe = StableDiffusionPipeline.from_pretrained(FIX + '/models/sd15', safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    extra = {}
    if case.get('adapter'):
        pipe.load_ip_adapter(FIX + '/models/ip-adapter', subfolder='models', weight_name=case['adapter'],
                             image_encoder_folder=None)
        pipe.set_ip_adapter_scale(1.0)
        # [negative, positive], as the reference cases hand them to the pipeline.
        embeds = torch.cat([image_embeds(case['negative_image']), image_embeds(case['image'])])
        extra['ip_adapter_image_embeds'] = [embeds.unsqueeze(1)]
    names = []
    for i, (file, _) in enumerate(case['loras']):
        pipe.load_lora_weights(OUT, weight_name=file, adapter_name=f'lora{i}')
        names.append(f'lora{i}')
    if names:
        pipe.set_adapters(names, adapter_weights=[w for _, w in case['loras']])
    generator = torch.Generator('cpu').manual_seed(case['seed'])
    image = pipe(prompt=case['prompt'], negative_prompt=case['negative_prompt'],
                 num_inference_steps=case['steps'], guidance_scale=case['cfg'], width=case['width'],
                 height=case['height'], generator=generator, output_type='np', **extra).images[0]
    pixels = (image * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(os.path.join(OUT, 'out', case['name'] + '.png'))
    return case, pixels


def addnet_hash(path):
    """A1111's (and kohya's) hash of a safetensors LoRA: sha256 of everything after the header."""
    with open(path, 'rb') as f:
        header_bytes = int.from_bytes(f.read(8), 'little')
        f.seek(8 + header_bytes)
        return hashlib.sha256(f.read()).hexdigest()


def main():
    make_files()
    cases, images = {}, {}
    for case in CASES:
        settings, pixels = run(case)
        cases[case['name']] = settings
        images[case['name']] = pixels.astype(np.float64)
        print(case['name'], 'mean |diff| from no LoRA:',
              np.abs(images[case['name']] - images['none']).mean() if 'none' in images else '-')
    for name in ('kohya', 'locon', 'peft', 'two', 'kohya_f16'):
        # A LoRA that hardly moves the picture would make the parity tests weak.
        assert np.abs(images[name] - images['none']).mean() > 3, name
    hashes = {name: addnet_hash(os.path.join(OUT, name)) for name in sorted(os.listdir(OUT))
              if name.endswith('.safetensors')}
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump({'cases': cases, 'addnet_hashes': hashes}, f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main()
