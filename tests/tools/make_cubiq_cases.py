"""Makes tests/fixtures/cubiq: the field's other negative-image methods (cubiq's
ComfyUI_IPAdapter_plus) run with stock diffusers 0.42.1 (CPU, float32) on the tiny reference
models, plus a small attention processor and conditioning code that follow cubiq's formulas.
Run with torch 2.15, torchvision 0.29, diffusers 0.42.1 and transformers 5.24 installed (the noise
runs torchvision's own transforms, as cubiq's does). Arguments, if any, pick the cases whose name
holds one of them (e.g. `noise`); cases.json is always written whole.

What follows cubiq (github.com/cubiq/ComfyUI_IPAdapter_plus), and where:
- combine modes: IPAdapterPlus.py, ipadapter_execute, "combine the embeddings if needed"
  (torch.sum / img[0] - torch.mean(img[1:]) / torch.mean / torch.mean(img / torch.norm(img, dim=0)));
- weight types: CrossAttentionPatch.py, ipadapter_attention, the `weight_type` if/elif chain,
  t_idx = the layer's index in execution order (down 0-5, middle 6, up 7-15), layers = 16;
- embeds scaling: CrossAttentionPatch.py, ipadapter_attention, the `embeds_scaling` branches
  (C penalty = ip_k.shape[2] / 1280);
- noise: IPAdapterPlus.py before the rewrite (parent of commit 643cb81), image_add_noise:
  ElasticTransform(alpha=75, sigma=noise*3.5), RandomVerticalFlip(p=1), RandomHorizontalFlip(p=1)
  (each flip draws torch.rand(1) first), then
  image + (0.25*(1-noise)+0.05) * randn_like(image) on the permuted (B,H,W,C) view, then
  ComfyUI's clip_preprocess (clip(255*x, 0, 255).round()/255, CLIP mean/std).
Minus' decisions (docs/DESIGN): the torch global generator is seeded with the run's seed (cubiq:
0); noise acts on the 224 crop of the usual preprocessing, on the negative images when there
are any, else on the positive ones; combine acts on the conditioned side's features before the
projection, each image's features times its weight; `subtract` takes the negative images away
too; the middle block counts in the weight types; a half of weight 0 adds nothing.

Each case writes <name>/out.png (the final image) and <name>/tensors.safetensors with the
projected image tokens (tokens_uncond, tokens_cond) and the UNet's first output, batch
[uncond, cond], before guidance (unet_out_step0); cases with noise also write
<name>/noised_0.png, the first noised image as the encoder saw it (8-bit).
"""
import json, os, sys
import numpy as np, torch, torch.nn.functional as F
import torchvision.transforms as TT
from PIL import Image
from safetensors.torch import save_file
from diffusers import StableDiffusionPipeline, DDIMScheduler
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

FIX = os.path.join(os.path.dirname(__file__), '..', 'fixtures')
OUT = os.path.join(FIX, 'cubiq')
torch.set_num_threads(1)
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Every combine mode, weight type and scaling, and noise with and without a negative image,
# on both adapters: five runs per adapter. PNG inputs only: JPEG decoders differ by an 8-bit
# level here and there, which would blur what these cases check.
CASES = [
    dict(name='add_ease_kv', images=['house.png', 'sticker_rgba.png'], negative_images=['lawn.png'],
         combine='add', weight_type='ease-in', negative_weight_type='ease-out', embeds_scaling='k-v',
         ip_weight=0.8, negative_ip_weight=0.6),
    dict(name='subtract_inout_kvc', images=['house.png', 'sticker_rgba.png'], negative_images=['lawn.png'],
         combine='subtract', weight_type='ease-in-out', negative_weight_type='reverse-in-out',
         embeds_scaling='k-v-c-penalty', ip_weight=1.0, negative_ip_weight=0.5),
    dict(name='average_weak_kmeanv', images=['house.png', 'lawn.png'], negative_images=[],
         combine='average', weight_type='weak-input', negative_weight_type='weak-output',
         embeds_scaling='k-mean-v-c-penalty', ip_weight=1.2, negative_ip_weight=0.0),
    dict(name='normavg_middle_noise', images=['house.png', 'lawn.png'], negative_images=[],
         combine='norm-average', weight_type='weak-middle', negative_weight_type='strong-middle',
         embeds_scaling='v-only', ip_weight=1.0, negative_ip_weight=1.0, noise=0.4),
    dict(name='concat_noise_negative', images=['house.png', 'sticker_rgba.png'], image_weights=[0.7, 1.3],
         negative_images=['lawn.png'], combine='concat', weight_type='linear', negative_weight_type='linear',
         embeds_scaling='v-only', ip_weight=0.9, negative_ip_weight=1.1, noise=0.7),
]
COMMON = dict(steps=4, cfg=6.0, width=64, height=64, seed=5, prompt='a house')

# The PIL backend, as the reference data has it: with torchvision installed, CLIPImageProcessor()
# would pick the torchvision one, whose resize differs by an 8-bit level here and there.
processor = CLIPImageProcessorPil()
encoder = CLIPVisionModelWithProjection.from_pretrained(FIX + '/models/ip-adapter/models/image_encoder')


def crop_u8(path):
    """The 224 crop of the usual preprocessing, as floats 0..255 (1, 3, 224, 224)."""
    image = Image.open(os.path.join(FIX, 'images', path))
    return processor(images=image, do_rescale=False, do_normalize=False, return_tensors='pt').pixel_values


def pixel_values(path):
    return processor(images=Image.open(os.path.join(FIX, 'images', path)), return_tensors='pt').pixel_values


def features(adapter, pixels):
    out = encoder(pixel_values=pixels, output_hidden_states=True)
    return out.image_embeds if adapter == 'base' else out.hidden_states[-2]


def empty_features(adapter):
    if adapter == 'base':
        return torch.zeros(1, encoder.config.projection_dim)
    return features(adapter, torch.zeros(1, 3, 224, 224))


def weighted_average(adapter, weighted):
    if not weighted:
        return empty_features(adapter)
    total, weight_sum = None, 0.0
    for feats, weight in weighted:
        term = feats * weight
        total = term if total is None else total + term
        weight_sum += weight
    return total / weight_sum


def combine(mode, stacked):
    # IPAdapterPlus.py, ipadapter_execute, "combine the embeddings if needed".
    if mode == 'add':
        return torch.sum(stacked, dim=0).unsqueeze(0)
    if mode == 'subtract':
        return (stacked[0] - torch.mean(stacked[1:], dim=0)).unsqueeze(0)
    if mode == 'average':
        return torch.mean(stacked, dim=0).unsqueeze(0)
    if mode == 'norm-average':
        return torch.mean(stacked / torch.norm(stacked, dim=0, keepdim=True), dim=0).unsqueeze(0)
    raise ValueError(mode)


def image_add_noise(image, noise):
    """cubiq's image_add_noise on (B, 3, 224, 224) images in 0..1; returns (B, H, W, C). His
    CenterCrop and Resize are left out: the images are already the 224 crop. torchvision's own
    transforms run here, so the global generator is drawn as in cubiq's: the x then y
    displacement fields (ElasticTransform.get_params), one torch.rand(1) for each flip
    (RandomVerticalFlip, RandomHorizontalFlip), then randn_like."""
    warp_and_flip = TT.Compose([
        TT.ElasticTransform(alpha=75.0, sigma=noise * 3.5),
        TT.RandomVerticalFlip(p=1.0),
        TT.RandomHorizontalFlip(p=1.0),
    ])
    image = warp_and_flip(image).permute([0, 2, 3, 1])
    return image + ((0.25 * (1 - noise) + 0.05) * torch.randn_like(image))


def clip_preprocess(image):
    # ComfyUI comfy/clip_vision.py clip_preprocess, for images already 224 x 224.
    mean = torch.tensor(CLIP_MEAN)
    std = torch.tensor(CLIP_STD)
    image = image.movedim(-1, 1)
    image = torch.clip((255. * image), 0, 255).round() / 255.0
    return (image - mean.view([3, 1, 1])) / std.view([3, 1, 1])


def weight_factor(kind, t_idx, layers, block):
    # CrossAttentionPatch.py, ipadapter_attention: the weight_type chain.
    if kind == 'ease-in':
        return 0.05 + 0.95 * (1 - t_idx / layers)
    if kind == 'ease-out':
        return 0.05 + 0.95 * (t_idx / layers)
    if kind == 'ease-in-out':
        return 0.05 + 0.95 * (1 - abs(t_idx - (layers / 2)) / (layers / 2))
    if kind == 'reverse-in-out':
        return 0.05 + 0.95 * (abs(t_idx - (layers / 2)) / (layers / 2))
    if kind == 'weak-input' and block == 'input':
        return 0.2
    if kind == 'weak-middle' and block == 'middle':
        return 0.2
    if kind == 'weak-output' and block == 'output':
        return 0.2
    if kind == 'strong-middle' and block in ('input', 'output'):
        return 0.2
    return 1.0


class CubiqProcessor(torch.nn.Module):
    """diffusers' IPAdapterAttnProcessor2_0 with a per-half, per-layer scale and cubiq's
    embeds scaling (CrossAttentionPatch.py, ipadapter_attention)."""

    def __init__(self, stock, t_idx, block, case):
        super().__init__()
        self.to_k_ip, self.to_v_ip = stock.to_k_ip[0], stock.to_v_ip[0]
        self.scaling = case['embeds_scaling']
        uncond = case['negative_ip_weight'] * weight_factor(case['negative_weight_type'], t_idx, 16, block)
        cond = case['ip_weight'] * weight_factor(case['weight_type'], t_idx, 16, block)
        self.weight = torch.tensor([uncond, cond], dtype=torch.float32).view(2, 1, 1)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        text, (ip,) = encoder_hidden_states
        batch = hidden_states.shape[0]
        heads = attn.heads

        def sdpa(q, k, v):
            d = k.shape[-1] // heads
            split = lambda t: t.view(batch, -1, heads, d).transpose(1, 2)
            out = F.scaled_dot_product_attention(split(q), split(k), split(v))
            return out.transpose(1, 2).reshape(batch, -1, heads * d)

        query = attn.to_q(hidden_states)
        out = sdpa(query, attn.to_k(text), attn.to_v(text))
        ip_k = self.to_k_ip(ip).view(batch, -1, query.shape[-1])
        ip_v = self.to_v_ip(ip).view(batch, -1, query.shape[-1])
        weight = self.weight
        if self.scaling == 'v-only':
            out_ip = sdpa(query, ip_k, ip_v) * weight
        else:
            on = (weight != 0).to(weight.dtype)  # a half of weight 0 adds nothing
            if self.scaling in ('k-v-c-penalty', 'k-mean-v-c-penalty'):
                weight = weight * (float(ip_k.shape[2]) / 1280.0)
            ip_k = ip_k * weight
            if self.scaling == 'k-mean-v-c-penalty':
                ip_v_mean = torch.mean(ip_v, dim=1, keepdim=True)
                ip_v = (ip_v - ip_v_mean) + ip_v_mean * weight
            else:
                ip_v = ip_v * weight
            out_ip = sdpa(query, ip_k, ip_v) * on
        out = out + out_ip
        out = attn.to_out[0](out)
        return attn.to_out[1](out)


def layer_places():
    """(t_idx, block) of each attn2 processor name, in execution order."""
    names = [f'down_blocks.{b}.attentions.{a}' for b in range(3) for a in range(2)]
    names += ['mid_block.attentions.0']
    names += [f'up_blocks.{b}.attentions.{a}' for b in range(1, 4) for a in range(3)]
    blocks = ['input'] * 6 + ['middle'] + ['output'] * 9
    return {f'{n}.transformer_blocks.0.attn2.processor': (i, blocks[i]) for i, n in enumerate(names)}


def conditioning(adapter, case):
    weights = case.get('image_weights', [1.0] * len(case['images']))
    positives = [(features(adapter, pixel_values(p)), w) for p, w in zip(case['images'], weights)]
    negatives = [(features(adapter, pixel_values(p)), 1.0) for p in case['negative_images']]
    mode = case['combine']
    group = positives + negatives if mode == 'subtract' else positives
    if mode == 'concat' or len(group) < 2:
        cond = weighted_average(adapter, positives)
    else:
        cond = combine(mode, torch.cat([f * w for f, w in group], 0))
    noised_u8 = None
    if case.get('noise', 0.0) > 0.0:
        paths, side_weights = (case['negative_images'], [1.0] * len(case['negative_images'])) \
            if case['negative_images'] else (case['images'], weights)
        torch.manual_seed(COMMON['seed'])  # cubiq: torch.manual_seed(0)
        crops = torch.cat([crop_u8(p) for p in paths], 0) / 255.0
        pixels = clip_preprocess(image_add_noise(crops, case['noise']))
        mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        std = torch.tensor(CLIP_STD).view(3, 1, 1)
        noised_u8 = ((pixels[0] * std + mean) * 255).round().clamp(0, 255).to(torch.uint8)
        noised = [(features(adapter, pixels[i:i + 1]), w) for i, w in enumerate(side_weights)]
        uncond = weighted_average(adapter, noised)
    else:
        uncond = weighted_average(adapter, negatives)
    return uncond, cond, noised_u8


@torch.no_grad()
def run(adapter, case):
    name = f"{adapter}_{case['name']}"
    pipe = StableDiffusionPipeline.from_pretrained(FIX + '/models/sd15', safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False)
    weights = 'ip-adapter_sd15.safetensors' if adapter == 'base' else 'ip-adapter-plus_sd15.safetensors'
    pipe.load_ip_adapter(FIX + '/models/ip-adapter', subfolder='models', weight_name=weights,
                         image_encoder_folder=None)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    places = layer_places()
    processors = pipe.unet.attn_processors
    for key, (t_idx, block) in places.items():
        processors[key] = CubiqProcessor(processors[key], t_idx, block, case)
    pipe.unet.set_attn_processor(processors)
    uncond, cond, noised_u8 = conditioning(adapter, case)
    project = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    tokens = {'tokens_uncond': project(uncond).contiguous(), 'tokens_cond': project(cond).contiguous()}
    first_output = []
    hook = pipe.unet.register_forward_hook(lambda module, args, out: first_output.append(out[0].clone()))
    generator = torch.Generator('cpu').manual_seed(COMMON['seed'])
    image = pipe(prompt=COMMON['prompt'], ip_adapter_image_embeds=[torch.stack([uncond, cond])],
                 num_inference_steps=COMMON['steps'], guidance_scale=COMMON['cfg'], width=COMMON['width'],
                 height=COMMON['height'], generator=generator, output_type='np').images[0]
    hook.remove()
    tokens['unet_out_step0'] = first_output[0].contiguous()
    os.makedirs(os.path.join(OUT, name), exist_ok=True)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(os.path.join(OUT, name, 'out.png'))
    save_file(tokens, os.path.join(OUT, name, 'tensors.safetensors'))
    if noised_u8 is not None:
        Image.fromarray(noised_u8.permute(1, 2, 0).numpy()).save(os.path.join(OUT, name, 'noised_0.png'))
    print(name, 'image mean', float(image.mean()))


if __name__ == '__main__':
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump({'common': COMMON, 'adapters': ['base', 'plus'], 'cases': CASES}, f, indent=1)
    picks = sys.argv[1:]
    for adapter in ('base', 'plus'):
        for case in CASES:
            if not picks or any(pick in case['name'] for pick in picks):
                run(adapter, case)
