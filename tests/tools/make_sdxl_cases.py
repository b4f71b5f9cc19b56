"""Makes the SDXL reference data (issue #24): a tiny random SDXL pipeline in diffusers' folder
layout, tiny SDXL IP-Adapters (base and Plus) in h94's key layout with the CLIP vision encoder
they go with, and stock diffusers 0.42.1 runs on them (CPU, float32, 1 thread) with every
intermediate tensor saved. Run with torch 2.15, diffusers 0.42.1 and transformers 5.24 installed
(with the CUDA wheel of torch on a machine without CUDA: LD_LIBRARY_PATH pointing at empty
stand-ins for its libraries):

    python tests/tools/make_sdxl_cases.py [OUT]        # OUT defaults to tests/fixtures/sdxl

Layout of OUT:
    models/sdxl/                  StableDiffusionXLPipeline folder: model_index.json, unet/, vae/,
                                  text_encoder/ (CLIPTextModel), text_encoder_2/
                                  (CLIPTextModelWithProjection), tokenizer/, tokenizer_2/, scheduler/
    models/ip-adapter/sdxl_models/ h94 layout: ip-adapter_sdxl.safetensors (ImageProjection, 4
                                  tokens), ip-adapter-plus_sdxl_vit-h.safetensors (Resampler, 16
                                  tokens), image_encoder/ (CLIPVisionModelWithProjection; one tiny
                                  encoder serves both adapters, h94 has bigG for the first, ViT-H for
                                  the second)
    cases/index.json              versions, model sizes, the attn2 layers' h94 ids, per-case summary
    cases/pixel_values.safetensors   CLIPImageProcessorPil output per input image (1, 3, 224, 224)
    cases/<name>/case.json        parameters, derived values (scheduler, timesteps, sigmas,
                                  add_time_ids, ...) and the tensor list
    cases/<name>/tensors.safetensors, out.png (out_1.png ... for further batch items)

Saved tensors (n = num_images_per_prompt, N = steps, h, w = height/8, width/8; side = cond | uncond;
k = 1 | 2 for the two text encoders; float32 unless noted):
    token_ids_{k}_{side} (1, 77) int64, prompt_embeds_{k}_{side} (1, 77, hidden_k): hidden_states[-2];
    prompt_embeds_{side} (1, 77, 40): both, concatenated; pooled_prompt_embeds_{side} (1, 32);
    (force_zeros case: the uncond ones are zeros and no uncond token ids are saved)
    encoder_hidden_states (2n, 77, 40), add_text_embeds (2n, 32), add_time_ids (2n, 6): what the
    UNet's first call got, batch [uncond x n, cond x n];
    clip_image_embeds_{pos,neg} (1, 24) base / clip_hidden_{pos,neg} (1, 257, 32) Plus (for a
    missing image: Plus only, the encoder on zeros); ip_adapter_image_embeds: [negative, positive]
    as passed to the pipeline; ip_tokens_{uncond,cond} (n, 1, 4 or 16, 40): the projection's output;
    noise (n, 4, h, w): the seed's one randn draw; latents_init: noise * init_noise_sigma;
    timesteps (N,); sigmas (N+1,) Euler only; unet_in_steps, unet_out_steps (N, 2n, 4, h, w):
    UNet input (after scale_model_input) and output before guidance; latents_steps (N, n, 4, h, w);
    decoded (n, 3, H, W): vae.decode(latents / 0.13025), unclamped; image (n, 3, H, W) in [0, 1]
    (out.png = round(255 * image)).

The tokenizers are the SD 1.5 fixtures' files (the real OpenAI CLIP BPE, as both SDXL tokenizers
are); tokenizer_2 pads with "!" (id 0) as stabilityai/stable-diffusion-xl-base-1.0's does. The real
vocabulary forces 49408-row token embeddings, which is most of the models' size.

What follows diffusers 0.42.1, and where (diffusers/pipelines/stable_diffusion_xl/
pipeline_stable_diffusion_xl.py unless named):
- encode_prompt, 283-520: each encoder's hidden_states[-2] (414, 475: the penultimate layer,
  before final_layer_norm), concatenated on the last axis (420, 497); the pooled embedding is
  text_encoder_2's `text_embeds` (410-411: the first 2-D output[0]; text_encoder's pooled output is
  never used); force_zeros_for_empty_prompt (424-427): with `negative_prompt=None` and the config
  flag on, the negative embeddings and the negative pooled embedding are zeros; a negative prompt
  of "" is encoded like any other;
- _get_add_time_ids, 731-747: original_size + crops_coords_top_left + target_size, i.e.
  (height, width, top, left, height, width); both CFG halves get the same ids (1148, 1151-1157);
  the UNet (models/unets/unet_2d_condition.py, get_aug_embed, "text_time") puts each id through
  the `addition_time_embed_dim`-wide sinusoid and concatenates them after the pooled embedding;
- encode_image, 524-547: base adapter -> image_embeds (empty image: zeros_like), Plus ->
  hidden_states[-2] (empty image: the encoder on zero pixel values);
- prepare_ip_adapter_image_embeds, 549-590: `ip_adapter_image_embeds` entries are [negative,
  positive] stacked and split with chunk(2): this is how a negative image gets into the
  unconditioned half (the same as the SD 1.5 scripts);
- loaders/unet.py 379-545 (_convert_ip_adapter_image_proj_to_diffusers: base `proj.weight` ->
  4 tokens of proj.weight.shape[0] // 4; Plus heads = to_q rows // 64) and 598-690
  (_convert_ip_adapter_attn_to_diffusers: `ip_adapter.{1,3,5,...}` in unet.attn_processors order,
  attn2 only, key_id += 2).
The adapters' projections are also recomputed here from the h94 keys alone (tencent-ailab
IP-Adapter's ImageProjModel and Resampler formulas) and checked against what diffusers made of them.
"""
import json, os, shutil, sys, time
import numpy as np, torch
from PIL import Image
from safetensors.torch import save_file, load_file
from diffusers import (StableDiffusionXLPipeline, UNet2DConditionModel, AutoencoderKL,
                       EulerDiscreteScheduler, DDIMScheduler)
from transformers import (CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPVisionConfig,
                          CLIPVisionModelWithProjection, CLIPImageProcessorPil)

FIX = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures')
IMAGES = os.path.join(FIX, 'images')
SD15_TOKENIZER = os.path.join(FIX, 'models', 'sd15', 'tokenizer')
torch.set_num_threads(1)

# Two text encoders of different widths (a swap or a wrong concatenation order shows), the second
# with a projection of yet another width; the first keeps 2 layers like CLIP-L's penultimate use,
# the second 3 (its last layer feeds the pooled embedding). bos/eos/pad ids as in the real SDXL
# configs (0, 2, 1): transformers then pools at argmax(input_ids), the first 49407.
TEXT_1 = dict(vocab_size=49408, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
              num_attention_heads=2, max_position_embeddings=77, hidden_act='quick_gelu',
              layer_norm_eps=1e-5, projection_dim=16, bos_token_id=0, eos_token_id=2, pad_token_id=1)
TEXT_2 = dict(vocab_size=49408, hidden_size=24, intermediate_size=48, num_hidden_layers=3,
              num_attention_heads=3, max_position_embeddings=77, hidden_act='gelu',
              layer_norm_eps=1e-5, projection_dim=32, bos_token_id=0, eos_token_id=2, pad_token_id=1)
CROSS_DIM = TEXT_1['hidden_size'] + TEXT_2['hidden_size']
TIME_EMBED_DIM = 8  # addition_time_embed_dim (SDXL: 256)

# SDXL's block types and head layout (attention_head_dim = heads per block, as in SDXL's config:
# here 16-wide heads in block 1, 8-wide in block 2 and the middle), transformer_layers_per_block
# [1, 2, 3] (SDXL: [1, 2, 10]; the middle block takes the last), widths [16, 32, 32] (SDXL:
# [320, 640, 1280]) in 8 groups (SDXL: 32) to keep the file near 4 MB.
UNET = dict(sample_size=32, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=[16, 32, 32],
            down_block_types=['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D'],
            up_block_types=['CrossAttnUpBlock2D', 'CrossAttnUpBlock2D', 'UpBlock2D'],
            mid_block_type='UNetMidBlock2DCrossAttn', attention_head_dim=[1, 2, 4],
            transformer_layers_per_block=[1, 2, 3], cross_attention_dim=CROSS_DIM,
            use_linear_projection=True, norm_num_groups=8, norm_eps=1e-5, flip_sin_to_cos=True,
            freq_shift=0, addition_embed_type='text_time', addition_time_embed_dim=TIME_EMBED_DIM,
            # pooled text embedding + 6 time ids, each TIME_EMBED_DIM wide (SDXL: 1280 + 6*256 = 2816)
            projection_class_embeddings_input_dim=TEXT_2['projection_dim'] + 6 * TIME_EMBED_DIM)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
           block_out_channels=[16, 16, 32, 32], down_block_types=['DownEncoderBlock2D'] * 4,
           up_block_types=['UpDecoderBlock2D'] * 4, norm_num_groups=8, sample_size=64,
           scaling_factor=0.13025, force_upcast=True)
VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
              image_size=224, patch_size=14, projection_dim=24, hidden_act='gelu', layer_norm_eps=1e-5)
# The Plus adapter's Resampler: h94's SDXL Plus has dim 1280 (20 heads of 64), depth 4, ff_mult 4;
# here dim 128, 2 heads (diffusers derives heads as to_q rows // 64). Depth and ff_mult stay: the
# loader builds IPAdapterPlusImageProjection with its defaults, depth 4, ffn_ratio 4
# (loaders/unet.py 534-540, models/embeddings.py IPAdapterPlusImageProjection.__init__).
RESAMPLER = dict(dim=128, depth=4, heads=2, dim_head=64, num_queries=16, ff_mult=4)
# stabilityai/stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json.
SCHEDULER = {'_class_name': 'EulerDiscreteScheduler', '_diffusers_version': '0.19.0.dev0',
             'beta_end': 0.012, 'beta_schedule': 'scaled_linear', 'beta_start': 0.00085,
             'clip_sample': False, 'interpolation_type': 'linear', 'num_train_timesteps': 1000,
             'prediction_type': 'epsilon', 'sample_max_value': 1.0, 'set_alpha_to_one': False,
             'skip_prk_steps': True, 'steps_offset': 1, 'timestep_spacing': 'leading',
             'trained_betas': None, 'use_karras_sigmas': False}
ADAPTER_FILES = {'base': 'ip-adapter_sdxl.safetensors', 'plus': 'ip-adapter-plus_sdxl_vit-h.safetensors'}

# `euler` is the file's scheduler (what StableDiffusionXLPipeline.from_pretrained gives), `ddim`
# DDIMScheduler.from_config of it. negative_prompt None takes diffusers' force_zeros path: Minus
# reads an empty negative prompt field as no negative prompt (A1111's SDXL code zeros an all-empty
# negative prompt the same way, sd_models_xl.py `force_zero_negative_prompt`).
CASES = [
    dict(name='text_only', adapter=None, scheduler='euler', steps=4, cfg=6.0, width=64, height=64, seed=42,
         prompt='a photo of a cat', negative_prompt='blurry, low quality'),
    dict(name='base_posneg', adapter='base', scheduler='euler', steps=4, cfg=6.0, width=64, height=64, seed=7,
         prompt='a house', negative_prompt=None, image='house.png', negative_image='lawn.png', weight=0.8),
    dict(name='plus_posneg', adapter='plus', scheduler='euler', steps=4, cfg=6.0, width=64, height=64, seed=7,
         prompt='a house', negative_prompt=None, image='house.png', negative_image='sticker_rgba.png', weight=0.8),
    dict(name='base_neg_only', adapter='base', scheduler='ddim', steps=4, cfg=5.0, width=64, height=64, seed=3,
         prompt='a red house on a hill', negative_prompt='ugly', image=None, negative_image='lawn.png', weight=1.0),
    dict(name='plus_batch2', adapter='plus', scheduler='ddim', steps=4, cfg=6.0, width=64, height=64, seed=11,
         prompt='a cozy cottage', negative_prompt='dark', image='house.png', negative_image='lawn.png',
         weight=0.9, num_images_per_prompt=2),
    dict(name='base_nonsquare', adapter='base', scheduler='euler', steps=4, cfg=6.5, width=88, height=56, seed=5,
         prompt='a wide landscape', negative_prompt=None, image='lawn.png', negative_image='house.png', weight=1.0),
    dict(name='empty_negative_zeros', adapter=None, scheduler='euler', steps=4, cfg=6.0, width=64, height=64,
         seed=42, prompt='a photo of a cat', negative_prompt=None),
    dict(name='plus_style_transfer', adapter='plus', scheduler='euler', steps=4, cfg=6.0, width=64, height=64,
         seed=9, prompt='a house', negative_prompt=None, image='house.png', negative_image='lawn.png', weight=1.1,
         weight_type='style transfer'),
    dict(name='base_composition', adapter='base', scheduler='ddim', steps=4, cfg=6.0, width=64, height=64,
         seed=9, prompt='a house', negative_prompt=None, image='house.png', negative_image='lawn.png', weight=1.0,
         weight_type='composition'),
    dict(name='plus_neg_only', adapter='plus', scheduler='euler', steps=4, cfg=5.0, width=64, height=64, seed=13,
         prompt='a garden', negative_prompt=None, image=None, negative_image='sticker_rgba.png', weight=1.0),
]

# cubiq's SDXL weight types as diffusers layer scales. ComfyUI_IPAdapter_plus, IPAdapterPlus.py,
# ipadapter_execute: `elif weight_type == "style transfer": weight = { 6:weight } if is_sdxl`,
# `"composition": { 3:weight }`; his SDXL index runs over the transformer groups in execution order,
# input 4, 5, 7, 8 -> 0-3, middle -> 4, output 0-5 -> 5-10, so 6 is output block 1 =
# up_blocks.0.attentions.1 and 3 is input 8 = down_blocks.2.attentions.1, InstantStyle's style and
# layout blocks. Every transformer layer of that group gets the weight, every other layer 0; both CFG
# halves alike (stock diffusers has one scale per layer: loaders/ip_adapter.py 259-305,
# set_ip_adapter_scale through _maybe_expand_lora_scales with default_scale 0.0). Each case's
# case.json lists the scale every attn2 layer got (derived.ip_scales).
WEIGHT_TYPES = {
    'style transfer': lambda weight: {'up': {'block_0': [0.0, weight, 0.0]}},
    'composition': lambda weight: {'down': {'block_2': [0.0, weight]}},
}


def made(factory, seed):
    """A module with its default initialisation drawn from a fixed seed, then every parameter
    moved off its default, as the SD 1.5 fixtures do: norm parameters += 0.05 N(0,1), constant
    tensors += 0.02 N(0,1), the rest += 0.05 std N(0,1)."""
    torch.manual_seed(seed)
    module = factory()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            if 'norm' in name or 'layer_norm' in name:
                param += 0.05 * noise
            elif param.numel() == 1 or float(param.std()) == 0.0:
                param += 0.02 * noise
            else:
                param += 0.05 * float(param.std()) * noise
    return module


def write_json(path, value):
    with open(path, 'w') as f:
        json.dump(value, f, indent=1)
        f.write('\n')


def make_pipeline_folder(root):
    os.makedirs(root, exist_ok=True)
    made(lambda: UNet2DConditionModel(**UNET), 1).save_pretrained(os.path.join(root, 'unet'))
    made(lambda: AutoencoderKL(**VAE), 2).save_pretrained(os.path.join(root, 'vae'))
    made(lambda: CLIPTextModel(CLIPTextConfig(**TEXT_1)), 3).save_pretrained(os.path.join(root, 'text_encoder'))
    made(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**TEXT_2)), 4).save_pretrained(
        os.path.join(root, 'text_encoder_2'))
    files = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json']
    for folder in ('tokenizer', 'tokenizer_2'):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for name in files:
            shutil.copy(os.path.join(SD15_TOKENIZER, name), os.path.join(root, folder, name))
    for name in ('tokenizer_config.json', 'special_tokens_map.json'):
        path = os.path.join(root, 'tokenizer_2', name)
        with open(path) as f:
            config = json.load(f)
        config['pad_token'] = '!'
        write_json(path, config)
    os.makedirs(os.path.join(root, 'scheduler'), exist_ok=True)
    write_json(os.path.join(root, 'scheduler', 'scheduler_config.json'), SCHEDULER)
    # As stabilityai/stable-diffusion-xl-base-1.0's model_index.json (force_zeros_for_empty_prompt
    # true is also the pipeline's default, pipeline_stable_diffusion_xl.py 250).
    write_json(os.path.join(root, 'model_index.json'), {
        '_class_name': 'StableDiffusionXLPipeline', '_diffusers_version': '0.42.1',
        'force_zeros_for_empty_prompt': True, 'feature_extractor': [None, None], 'image_encoder': [None, None],
        'scheduler': ['diffusers', 'EulerDiscreteScheduler'], 'text_encoder': ['transformers', 'CLIPTextModel'],
        'text_encoder_2': ['transformers', 'CLIPTextModelWithProjection'],
        'tokenizer': ['transformers', 'CLIPTokenizer'], 'tokenizer_2': ['transformers', 'CLIPTokenizer'],
        'unet': ['diffusers', 'UNet2DConditionModel'], 'vae': ['diffusers', 'AutoencoderKL']})


def cross_attention_layers(unet):
    """(h94 key id, diffusers processor name, hidden size) for every attn2, in the order
    _convert_ip_adapter_attn_to_diffusers counts them (loaders/unet.py 626-690)."""
    out, key_id = [], 1
    blocks = UNET['block_out_channels']
    for name in unet.attn_processors.keys():
        if name.endswith('attn1.processor'):
            continue
        if name.startswith('mid_block'):
            hidden = blocks[-1]
        elif name.startswith('up_blocks'):
            hidden = list(reversed(blocks))[int(name[len('up_blocks.')])]
        else:
            hidden = blocks[int(name[len('down_blocks.')])]
        out.append((key_id, name, hidden))
        key_id += 2
    return out


def linear_weight(generator, rows, cols):
    bound = 1 / cols ** 0.5
    return (torch.rand(rows, cols, generator=generator) * 2 - 1) * bound


def norm_pair(generator, width):
    return 1 + 0.05 * torch.randn(width, generator=generator), 0.05 * torch.randn(width, generator=generator)


def adapter_layers(generator, unet):
    tensors = {}
    for key_id, _, hidden in cross_attention_layers(unet):
        tensors[f'ip_adapter.{key_id}.to_k_ip.weight'] = linear_weight(generator, hidden, CROSS_DIM)
        tensors[f'ip_adapter.{key_id}.to_v_ip.weight'] = linear_weight(generator, hidden, CROSS_DIM)
    return tensors


def base_adapter(generator, unet):
    """tencent-ailab ImageProjModel: proj Linear(projection_dim, 4 * cross), norm LayerNorm(cross)."""
    tensors = {'image_proj.proj.weight': linear_weight(generator, 4 * CROSS_DIM, VISION['projection_dim']),
               'image_proj.proj.bias': 0.02 * torch.randn(4 * CROSS_DIM, generator=generator)}
    tensors['image_proj.norm.weight'], tensors['image_proj.norm.bias'] = norm_pair(generator, CROSS_DIM)
    tensors.update(adapter_layers(generator, unet))
    return tensors


def plus_adapter(generator, unet):
    """tencent-ailab Resampler(dim, depth, dim_head 64, heads, num_queries 16,
    embedding_dim = vision hidden size, output_dim = cross, ff_mult) in h94's key names."""
    dim, inner = RESAMPLER['dim'], RESAMPLER['dim_head'] * RESAMPLER['heads']
    p = 'image_proj.'
    tensors = {p + 'latents': torch.randn(1, RESAMPLER['num_queries'], dim, generator=generator) / dim ** 0.5,
               p + 'proj_in.weight': linear_weight(generator, dim, VISION['hidden_size']),
               p + 'proj_in.bias': 0.02 * torch.randn(dim, generator=generator),
               p + 'proj_out.weight': linear_weight(generator, CROSS_DIM, dim),
               p + 'proj_out.bias': 0.02 * torch.randn(CROSS_DIM, generator=generator)}
    tensors[p + 'norm_out.weight'], tensors[p + 'norm_out.bias'] = norm_pair(generator, CROSS_DIM)
    for i in range(RESAMPLER['depth']):
        q = f'{p}layers.{i}.'
        tensors[q + '0.norm1.weight'], tensors[q + '0.norm1.bias'] = norm_pair(generator, dim)
        tensors[q + '0.norm2.weight'], tensors[q + '0.norm2.bias'] = norm_pair(generator, dim)
        tensors[q + '0.to_q.weight'] = linear_weight(generator, inner, dim)
        tensors[q + '0.to_kv.weight'] = linear_weight(generator, 2 * inner, dim)
        tensors[q + '0.to_out.weight'] = linear_weight(generator, dim, inner)
        tensors[q + '1.0.weight'], tensors[q + '1.0.bias'] = norm_pair(generator, dim)
        tensors[q + '1.1.weight'] = linear_weight(generator, dim * RESAMPLER['ff_mult'], dim)
        tensors[q + '1.3.weight'] = linear_weight(generator, dim, dim * RESAMPLER['ff_mult'])
    tensors.update(adapter_layers(generator, unet))
    return tensors


def make_adapters(root, unet):
    folder = os.path.join(root, 'sdxl_models')
    os.makedirs(folder, exist_ok=True)
    made(lambda: CLIPVisionModelWithProjection(CLIPVisionConfig(**VISION)), 5).save_pretrained(
        os.path.join(folder, 'image_encoder'))
    save_file(base_adapter(torch.Generator().manual_seed(6), unet), os.path.join(folder, ADAPTER_FILES['base']))
    save_file(plus_adapter(torch.Generator().manual_seed(8), unet), os.path.join(folder, ADAPTER_FILES['plus']))


def h94_tokens(adapter, state, features):
    """The projection to ip tokens from the h94 keys alone (tencent-ailab ip_adapter.py
    ImageProjModel, resampler.py Resampler/PerceiverAttention/FeedForward)."""
    ln = torch.nn.functional.layer_norm
    s = {k[len('image_proj.'):]: v for k, v in state.items() if k.startswith('image_proj.')}
    if adapter == 'base':
        x = (features @ s['proj.weight'].T + s['proj.bias']).reshape(-1, 4, CROSS_DIM)
        return ln(x, (CROSS_DIM,), s['norm.weight'], s['norm.bias'])
    dim, heads, dim_head = RESAMPLER['dim'], RESAMPLER['heads'], RESAMPLER['dim_head']
    x = features @ s['proj_in.weight'].T + s['proj_in.bias']
    latents = s['latents'].repeat(x.shape[0], 1, 1)
    for i in range(RESAMPLER['depth']):
        q = f'layers.{i}.'
        xn = ln(x, (dim,), s[q + '0.norm1.weight'], s[q + '0.norm1.bias'])
        ln_ = ln(latents, (dim,), s[q + '0.norm2.weight'], s[q + '0.norm2.bias'])
        query = ln_ @ s[q + '0.to_q.weight'].T
        k, v = (torch.cat([xn, ln_], dim=1) @ s[q + '0.to_kv.weight'].T).chunk(2, dim=-1)
        split = lambda t: t.reshape(t.shape[0], t.shape[1], heads, dim_head).transpose(1, 2)
        scale = 1 / dim_head ** 0.25
        weight = ((split(query) * scale) @ (split(k) * scale).transpose(-2, -1)).softmax(dim=-1)
        out = (weight @ split(v)).transpose(1, 2).reshape(latents.shape[0], latents.shape[1], -1)
        latents = out @ s[q + '0.to_out.weight'].T + latents
        ff = ln(latents, (dim,), s[q + '1.0.weight'], s[q + '1.0.bias']) @ s[q + '1.1.weight'].T
        latents = torch.nn.functional.gelu(ff) @ s[q + '1.3.weight'].T + latents
    out = latents @ s['proj_out.weight'].T + s['proj_out.bias']
    return ln(out, (CROSS_DIM,), s['norm_out.weight'], s['norm_out.bias'])


class Runner:
    def __init__(self, out):
        self.out = out
        self.models = os.path.join(out, 'models', 'sdxl')
        self.adapters = os.path.join(out, 'models', 'ip-adapter')
        self.processor = CLIPImageProcessorPil()
        self.pixels = {}  # input file -> preprocessed pixel values, saved once for all cases
        self.encoder = CLIPVisionModelWithProjection.from_pretrained(
            os.path.join(self.adapters, 'sdxl_models', 'image_encoder'))

    def pipeline(self, case):
        pipe = StableDiffusionXLPipeline.from_pretrained(self.models, add_watermarker=False)
        if case['adapter']:
            pipe.load_ip_adapter(self.adapters, subfolder='sdxl_models', weight_name=ADAPTER_FILES[case['adapter']],
                                 image_encoder_folder=None)
            kind = case.get('weight_type')
            pipe.set_ip_adapter_scale(WEIGHT_TYPES[kind](case['weight']) if kind else case['weight'])
            pipe.image_encoder = self.encoder
            pipe.feature_extractor = self.processor
        if case['scheduler'] == 'ddim':
            pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        assert case['scheduler'] != 'euler' or isinstance(pipe.scheduler, EulerDiscreteScheduler)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def image_features(self, case, path, tensors, side):
        """encode_image (524-547) for one side; None -> the empty embedding."""
        if path is None:
            if case['adapter'] == 'base':
                return torch.zeros(1, VISION['projection_dim'])
            out = self.encoder(pixel_values=torch.zeros(1, 3, 224, 224), output_hidden_states=True)
            tensors[f'clip_hidden_{side}'] = out.hidden_states[-2]
            return out.hidden_states[-2]
        pixels = self.processor(images=Image.open(os.path.join(IMAGES, path)), return_tensors='pt').pixel_values
        self.pixels[path] = pixels
        out = self.encoder(pixel_values=pixels, output_hidden_states=True)
        if case['adapter'] == 'base':
            tensors[f'clip_image_embeds_{side}'] = out.image_embeds
            return out.image_embeds
        tensors[f'clip_hidden_{side}'] = out.hidden_states[-2]
        return out.hidden_states[-2]

    def text(self, pipe, prompt, side, tensors):
        """One side of encode_prompt by hand: token ids, each encoder's hidden_states[-2], pooled."""
        parts = []
        for index, (tokenizer, encoder) in enumerate(((pipe.tokenizer, pipe.text_encoder),
                                                      (pipe.tokenizer_2, pipe.text_encoder_2)), 1):
            ids = tokenizer(prompt, padding='max_length', max_length=tokenizer.model_max_length, truncation=True,
                            return_tensors='pt').input_ids
            out = encoder(ids, output_hidden_states=True)
            tensors[f'token_ids_{index}_{side}'] = ids
            tensors[f'prompt_embeds_{index}_{side}'] = out.hidden_states[-2]
            parts.append(out.hidden_states[-2])
            if index == 2:
                tensors[f'pooled_prompt_embeds_{side}'] = out.text_embeds
        tensors[f'prompt_embeds_{side}'] = torch.cat(parts, dim=-1)

    @torch.no_grad()
    def run(self, case):
        case = dict(dict(image=None, negative_image=None, weight=None, num_images_per_prompt=1), **case)
        n = case['num_images_per_prompt']
        pipe = self.pipeline(case)
        tensors = {}
        self.text(pipe, case['prompt'], 'cond', tensors)
        if case['negative_prompt'] is None:
            # force_zeros_for_empty_prompt, 424-427
            tensors['prompt_embeds_uncond'] = torch.zeros_like(tensors['prompt_embeds_cond'])
            tensors['pooled_prompt_embeds_uncond'] = torch.zeros_like(tensors['pooled_prompt_embeds_cond'])
        else:
            self.text(pipe, case['negative_prompt'], 'uncond', tensors)
        kwargs = {}
        state = None
        if case['adapter']:
            state = load_file(os.path.join(self.adapters, 'sdxl_models', ADAPTER_FILES[case['adapter']]))
            negative = self.image_features(case, case['negative_image'], tensors, 'neg')
            positive = self.image_features(case, case['image'], tensors, 'pos')
            embeds = torch.stack([negative, positive])
            tensors['ip_adapter_image_embeds'] = embeds
            kwargs['ip_adapter_image_embeds'] = [embeds]
        # The hooks return None: a forward hook's return value would replace the module's output.
        calls, latents_steps, decoded, captured = [], [], [], {}
        unet_pre = pipe.unet.register_forward_pre_hook(
            lambda m, args, kw: calls.append(dict(sample=args[0].clone(), t=args[1], kw=kw)) and None,
            with_kwargs=True)
        unet_post = pipe.unet.register_forward_hook(lambda m, args, out: calls[-1].update(out=out[0].clone()))

        def keep_tokens(module, args, out):
            captured.setdefault('ip_tokens', out[0].clone())
        if case['adapter']:
            proj_hook = pipe.unet.encoder_hid_proj.register_forward_hook(keep_tokens)
        prepare = pipe.prepare_latents

        def keep_initial(*a, **k):
            captured['latents_init'] = prepare(*a, **k)
            return captured['latents_init']
        pipe.prepare_latents = keep_initial
        decode = pipe.vae.decode

        def keep_decoded(*a, **k):
            result = decode(*a, **k)
            decoded.append(result[0].clone())
            return result
        pipe.vae.decode = keep_decoded

        def keep_latents(pipeline, step, timestep, values):
            latents_steps.append(values['latents'].clone())
            return values

        generator = torch.Generator('cpu').manual_seed(case['seed'])
        images = pipe(prompt=case['prompt'], negative_prompt=case['negative_prompt'],
                      num_inference_steps=case['steps'], guidance_scale=case['cfg'], width=case['width'],
                      height=case['height'], generator=generator, num_images_per_prompt=n,
                      callback_on_step_end=keep_latents, output_type='np', **kwargs).images
        unet_pre.remove(), unet_post.remove()
        if case['adapter']:
            proj_hook.remove()
        first = calls[0]['kw']
        added = first['added_cond_kwargs']
        h, w = case['height'] // 8, case['width'] // 8
        noise = torch.randn((n, 4, h, w), generator=torch.Generator('cpu').manual_seed(case['seed']))
        tensors.update(
            encoder_hidden_states=first['encoder_hidden_states'], add_text_embeds=added['text_embeds'],
            add_time_ids=added['time_ids'], noise=noise, latents_init=captured['latents_init'],
            timesteps=torch.stack([torch.as_tensor(c['t']) for c in calls]),
            unet_in_steps=torch.stack([c['sample'] for c in calls]),
            unet_out_steps=torch.stack([c['out'] for c in calls]),
            latents_steps=torch.stack(latents_steps), decoded=decoded[0],
            image=torch.from_numpy(images).permute(0, 3, 1, 2))
        if isinstance(pipe.scheduler, EulerDiscreteScheduler):
            tensors['sigmas'] = pipe.scheduler.sigmas.clone()
        if case['adapter']:
            tokens = captured['ip_tokens']  # (2n, 1, T, cross): [uncond x n, cond x n]
            tensors['ip_tokens_uncond'], tensors['ip_tokens_cond'] = tokens[:n].clone(), tokens[n:].clone()
        self.check(case, pipe, tensors, state)
        return self.save(case, pipe, tensors, images)

    def check(self, case, pipe, tensors, state):
        n = case['num_images_per_prompt']
        expect = torch.cat([tensors['prompt_embeds_uncond']] * n + [tensors['prompt_embeds_cond']] * n)
        assert torch.equal(tensors['encoder_hidden_states'], expect), 'prompt embeds differ from encode_prompt'
        pooled = torch.cat([tensors['pooled_prompt_embeds_uncond']] * n + [tensors['pooled_prompt_embeds_cond']] * n)
        assert torch.equal(tensors['add_text_embeds'], pooled), 'pooled embeds differ'
        ids = [case['height'], case['width'], 0, 0, case['height'], case['width']]
        assert tensors['add_time_ids'].tolist() == [ids] * (2 * n), tensors['add_time_ids']
        sigma = pipe.scheduler.init_noise_sigma
        assert torch.allclose(tensors['latents_init'], tensors['noise'] * sigma, rtol=0, atol=1e-6)
        if case['adapter']:
            for side, half in (('neg', 'uncond'), ('pos', 'cond')):
                features = tensors['ip_adapter_image_embeds'][0 if side == 'neg' else 1]
                mine = h94_tokens(case['adapter'], state, features)
                got = tensors[f'ip_tokens_{half}'][:, 0]
                error = float((mine - got).abs().max())
                assert error < 1e-5, f'h94 projection differs from diffusers by {error}'
        for name, tensor in tensors.items():
            assert torch.isfinite(tensor.float()).all(), name

    def save(self, case, pipe, tensors, images):
        folder = os.path.join(self.out, 'cases', case['name'])
        os.makedirs(folder, exist_ok=True)
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        save_file(tensors, os.path.join(folder, 'tensors.safetensors'))
        for i, image in enumerate(images):
            name = 'out.png' if i == 0 else f'out_{i}.png'
            Image.fromarray((image * 255).round().astype(np.uint8)).save(os.path.join(folder, name))
        # Non-finite floats as strings (strict JSON); the set of defaulted keys sorted (it is a set).
        config = {k: (str(v) if isinstance(v, float) and not np.isfinite(v) else
                      sorted(v) if k == '_use_default_values' else v)
                  for k, v in dict(pipe.scheduler.config).items()}
        derived = dict(
            scheduler_class=type(pipe.scheduler).__name__, scheduler_config=config,
            timesteps=[float(t) for t in tensors['timesteps']],
            init_noise_sigma=float(pipe.scheduler.init_noise_sigma),
            add_time_ids=tensors['add_time_ids'][0].tolist(),
            force_zeros_for_empty_prompt=case['negative_prompt'] is None,
            vae_scaling_factor=pipe.vae.config.scaling_factor,
            latent_shape=list(tensors['latents_init'].shape),
            image_mean=float(images.mean()), image_std=float(images.std()),
            image_clipped_fraction=float(((tensors['decoded'] / 2 + 0.5 < 0) |
                                          (tensors['decoded'] / 2 + 0.5 > 1)).float().mean()),
            final_latent_std=float(tensors['latents_steps'][-1].std()))
        if 'sigmas' in tensors:
            derived['sigmas'] = tensors['sigmas'].tolist()
        if case['adapter']:
            derived['ip_scales'] = {name[:-len('.processor')]: processor.scale[0]
                                    for name, processor in pipe.unet.attn_processors.items()
                                    if name.endswith('attn2.processor')}
        listing = {k: dict(shape=list(v.shape), dtype=str(v.dtype).replace('torch.', '')) for k, v in tensors.items()}
        write_json(os.path.join(folder, 'case.json'), dict(case=case, derived=derived, tensors=listing))
        print(case['name'], 'image mean %.4f std %.4f clipped %.4f' % (
            derived['image_mean'], derived['image_std'], derived['image_clipped_fraction']), flush=True)
        return dict(adapter=case['adapter'], scheduler=case['scheduler'], image_mean=derived['image_mean'],
                    image_std=derived['image_std'], files=sorted(os.listdir(folder)))


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(FIX, 'sdxl')
    started = time.time()
    make_pipeline_folder(os.path.join(out, 'models', 'sdxl'))
    unet = UNet2DConditionModel.from_pretrained(os.path.join(out, 'models', 'sdxl', 'unet'))
    make_adapters(os.path.join(out, 'models', 'ip-adapter'), unet)
    runner = Runner(out)
    summary = {case['name']: runner.run(case) for case in CASES}
    save_file({k: v.contiguous() for k, v in runner.pixels.items()},
              os.path.join(out, 'cases', 'pixel_values.safetensors'))
    import diffusers, transformers, safetensors, PIL
    sizes = {name: folder_bytes(os.path.join(out, 'models', 'sdxl', name))
             for name in ('unet', 'vae', 'text_encoder', 'text_encoder_2', 'tokenizer', 'tokenizer_2')}
    sizes['ip-adapter'] = folder_bytes(os.path.join(out, 'models', 'ip-adapter'))
    write_json(os.path.join(out, 'cases', 'index.json'), dict(
        versions=dict(python=sys.version.split()[0], torch=torch.__version__, diffusers=diffusers.__version__,
                      transformers=transformers.__version__, safetensors=safetensors.__version__,
                      pillow=PIL.__version__, numpy=np.__version__, image_processor='CLIPImageProcessorPil',
                      device='cpu', dtype='float32', torch_num_threads=1),
        model_bytes=sizes,
        attn2_layers=[dict(key_id=k, name=name, hidden=hidden) for k, name, hidden in cross_attention_layers(unet)],
        cases=summary))
    print('total %.1f MB in %.0f s' % (folder_bytes(out) / 1e6, time.time() - started))


if __name__ == '__main__':
    main()
