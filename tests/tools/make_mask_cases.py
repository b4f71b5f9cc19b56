"""Makes tests/fixtures/masks: regional image prompts (a mask per image) run with stock
diffusers 0.42.1 (CPU, float32) on the tiny reference models, plus a small attention
processor for what stock diffusers has no API for: a mask of its own for each image of the
unconditioned half. Run with torch 2.15, diffusers 0.42.1 and transformers 5.24 installed
(with the CUDA wheel of torch on a machine without CUDA: LD_LIBRARY_PATH pointing at empty
stand-ins for its libraries). Arguments, if any, pick the cases whose name holds one of them;
cases.json is always written whole.

What follows diffusers 0.42.1, and where (diffusers/...):
- the masks: image_processor.py, IPAdapterMaskProcessor (1277-1316: Lanczos resize, grayscale,
  binarize) through VaeImageProcessor.preprocess (608-740: resize to the output first, then
  convert("L"), /255, then `binarize`, 524-538: < 0.5 -> 0, >= 0.5 -> 1);
- the downsampling to each layer's tokens: image_processor.py 1319-1378,
  IPAdapterMaskProcessor.downsample (grid mask_h x mask_w from the output's aspect ratio,
  F.interpolate bicubic, padded with zeros or cut to the layer's token count);
- the attention: models/attention_processor.py 4408-4622, IPAdapterAttnProcessor2_0; with
  masks (4528-4603) every image of the adapter attends on its own tokens and adds
  `scale[i] * (attention * downsampled mask)`.

Cases (each on the base and/or the Plus adapter):
- two_pos_hard: two positive images under complementary hard masks, no negative image: stock
  pipeline, `ip_adapter_image=[[a, b]]`, `cross_attention_kwargs={'ip_adapter_masks': ...}`
  (the unconditioned half holds the "no image" embeddings under the same masks);
- soft_tall: soft (gradient) masks of other sizes than the output, fitted by the processor,
  on a 64 x 72 output whose smaller layers get diffusers' transposed grids (5 x 4 tokens,
  a 4 x 5 grid);
- masked_negative: masked and unmasked positive images with image weights, a negative image
  under its own mask, separate half scales, 96 x 64: HalfMaskProcessor below, which is the
  stock masked branch (attention_processor.py 4577-4603) with a mask and a scale per CFG half;
- stock_partition: positive images under masks that cover the picture once, and one negative
  image that stock diffusers puts in every slot (`min(i, n-1)`) under the positive masks
  (ip_adapter_image_embeds stacked [negative, positive]): Minus gives the unmasked negative
  image the same result.

Each case writes <name>/out.png (the final image) and <name>/tensors.safetensors: the UNet's
first output, batch [uncond, cond], before guidance (unet_out_step0), each mask fitted to the
output (fitted_<half>_<i>, [H, W]) and downsampled to each attention layer's token count
(down_<half>_<i>_<tokens>, [tokens]).
"""
import json, os, sys
import numpy as np, torch, torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from diffusers import StableDiffusionPipeline, DDIMScheduler
from diffusers.image_processor import IPAdapterMaskProcessor
from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

FIX = os.path.join(os.path.dirname(__file__), '..', 'fixtures')
OUT = os.path.join(FIX, 'masks')
MASKS = os.path.join(OUT, 'inputs')
torch.set_num_threads(1)

COMMON = dict(steps=4, cfg=6.0, seed=5, prompt='a house')
# A mask is {'mask': file} or null (the image acts everywhere); weights default to 1.
CASES = [
    dict(name='two_pos_hard', adapters=['base', 'plus'], width=64, height=64, ip_weight=1.0,
         images=[dict(path='house.png', mask='left.png'), dict(path='sticker_rgba.png', mask='right.png')],
         negative_images=[]),
    dict(name='soft_tall', adapters=['base', 'plus'], width=64, height=72, ip_weight=0.9,
         images=[dict(path='house.png', mask='soft_blob.png'), dict(path='lawn.png', mask='soft_band.png')],
         negative_images=[]),
    dict(name='masked_negative', adapters=['base', 'plus'], width=96, height=64, ip_weight=0.9,
         negative_ip_weight=1.2,
         images=[dict(path='house.png', mask='soft_blob.png', weight=1.3), dict(path='sticker_rgba.png', weight=0.6)],
         negative_images=[dict(path='lawn.png', mask='lower.png')]),
    dict(name='stock_partition', adapters=['base'], width=64, height=64, ip_weight=1.0,
         images=[dict(path='house.png', mask='left.png'), dict(path='sticker_rgba.png', mask='right.png')],
         negative_images=[dict(path='lawn.png')]),
]


def make_mask_inputs():
    """The mask pictures: hard halves at the output size (exact complements), soft ones at
    other sizes, and a hard lower part at twice the size."""
    os.makedirs(MASKS, exist_ok=True)
    x = np.arange(64)[None, :].repeat(64, 0)
    left = np.where(x < 28, 255, 0).astype(np.uint8)
    Image.fromarray(left, 'L').save(os.path.join(MASKS, 'left.png'))
    Image.fromarray(255 - left, 'L').save(os.path.join(MASKS, 'right.png'))
    yy, xx = np.mgrid[0:60, 0:90]
    blob = 255 * np.clip(1.4 - np.hypot((xx - 30) / 30, (yy - 26) / 24), 0, 1)
    Image.fromarray(blob.round().astype(np.uint8), 'L').save(os.path.join(MASKS, 'soft_blob.png'))
    yy, xx = np.mgrid[0:80, 0:50]
    band = 255 * np.clip((yy - 20) / 45 + 0.1 * np.sin(xx / 5), 0, 1)
    Image.fromarray(band.round().astype(np.uint8), 'L').save(os.path.join(MASKS, 'soft_band.png'))
    yy = np.mgrid[0:128, 0:128][0]
    Image.fromarray(np.where(yy >= 70, 255, 0).astype(np.uint8), 'L').save(os.path.join(MASKS, 'lower.png'))


processor = CLIPImageProcessorPil()
encoder = CLIPVisionModelWithProjection.from_pretrained(FIX + '/models/ip-adapter/models/image_encoder')
mask_processor = IPAdapterMaskProcessor()


def image(path):
    return Image.open(os.path.join(FIX, 'images', path))


def features(adapter, pixels):
    out = encoder(pixel_values=pixels, output_hidden_states=True)
    return out.image_embeds if adapter == 'base' else out.hidden_states[-2]


def image_features(adapter, path):
    return features(adapter, processor(images=image(path), return_tensors='pt').pixel_values)


def empty_features(adapter):
    # pipeline_stable_diffusion.py encode_image: zeros_like(image_embeds) for the base
    # adapter, the encoder on zero pixels for the others.
    if adapter == 'base':
        return torch.zeros(1, encoder.config.projection_dim)
    return features(adapter, torch.zeros(1, 3, 224, 224))


def fitted(case, masks):
    """IPAdapterMaskProcessor.preprocess of the mask files (None: no mask) -> [H, W] each."""
    out = []
    for name in masks:
        if name is None:
            out.append(None)
            continue
        tensor = mask_processor.preprocess(Image.open(os.path.join(MASKS, name)),
                                           height=case['height'], width=case['width'])
        out.append(tensor[0, 0])
    return out


def layer_tokens(case):
    """Token counts of the tiny UNet's attention layers: the latent, then three stride-2
    convolutions (ceil halving); the middle block sits at the last."""
    h, w = case['height'] // 8, case['width'] // 8
    counts = []
    for _ in range(4):
        counts.append(h * w)
        h, w = (h + 1) // 2, (w + 1) // 2
    return counts


class HalfMaskProcessor(torch.nn.Module):
    """IPAdapterAttnProcessor2_0 (attention_processor.py 4451-4637) with a mask and a scale
    per CFG half: each slot's image attention (4577-4593) times its half's downsampled mask
    (IPAdapterMaskProcessor.downsample, 4595-4602; no mask: exactly 1), times the half's scale
    and the image's weight (4603: `hidden_states + scale[i] * (attention * mask)`)."""

    def __init__(self, stock, slots, scales):
        super().__init__()
        self.to_k_ip, self.to_v_ip = stock.to_k_ip[0], stock.to_v_ip[0]
        self.slots = slots      # per slot: [(mask [H, W] or None, weight) uncond, (...) cond]
        self.scales = scales    # (uncond scale, cond scale)

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        text, (ip,) = encoder_hidden_states
        batch = hidden_states.shape[0]
        half = batch // 2
        heads = attn.heads

        def sdpa(q, k, v):
            d = k.shape[-1] // heads
            split = lambda t: t.view(batch, -1, heads, d).transpose(1, 2)
            out = F.scaled_dot_product_attention(split(q), split(k), split(v))
            return out.transpose(1, 2).reshape(batch, -1, heads * d)

        query = attn.to_q(hidden_states)
        hidden = sdpa(query, attn.to_k(text), attn.to_v(text))
        for i, halves in enumerate(self.slots):
            attended = sdpa(query, self.to_k_ip(ip[:, i]), self.to_v_ip(ip[:, i]))
            masks, scales = [], []
            for (mask, weight), scale in zip(halves, self.scales):
                if mask is None:
                    masks.append(torch.ones(half, attended.shape[1], attended.shape[2]))
                else:
                    masks.append(IPAdapterMaskProcessor.downsample(mask[None], half, attended.shape[1],
                                                                   attended.shape[2]))
                scales.append(torch.full((half, 1, 1), scale * weight))
            hidden = hidden + torch.cat(scales) * (attended * torch.cat(masks))
        hidden = attn.to_out[0](hidden)
        return attn.to_out[1](hidden)


def side(case, key):
    return [(entry['path'], entry.get('mask'), entry.get('weight', 1.0)) for entry in case[key]]


def save_masks(case, tensors, half, masks):
    for i, mask in enumerate(masks):
        if mask is None:
            continue
        tensors[f'fitted_{half}_{i}'] = mask.contiguous()
        for tokens in layer_tokens(case):
            down = IPAdapterMaskProcessor.downsample(mask[None], 1, tokens, 1)
            tensors[f'down_{half}_{i}_{tokens}'] = down.reshape(-1).contiguous()


def pipeline(adapter):
    pipe = StableDiffusionPipeline.from_pretrained(FIX + '/models/sd15', safety_checker=None,
                                                   feature_extractor=None, requires_safety_checker=False)
    weights = 'ip-adapter_sd15.safetensors' if adapter == 'base' else 'ip-adapter-plus_sd15.safetensors'
    pipe.load_ip_adapter(FIX + '/models/ip-adapter', subfolder='models', weight_name=weights,
                         image_encoder_folder=None)
    pipe.image_encoder = encoder
    pipe.feature_extractor = processor
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


def stock_arguments(adapter, case, pipe, tensors):
    """Stock diffusers: the masks as `ip_adapter_masks`, one scale."""
    positives = side(case, 'images')
    masks = fitted(case, [mask for _, mask, _ in positives])
    save_masks(case, tensors, 'cond', masks)
    pipe.set_ip_adapter_scale(case['ip_weight'])
    stacked = torch.stack(masks)[None]  # [1, images, H, W]
    kwargs = dict(cross_attention_kwargs={'ip_adapter_masks': [stacked]})
    if not case['negative_images']:
        kwargs['ip_adapter_image'] = [[image(path) for path, _, _ in positives]]
        return kwargs
    # stock_partition: negative image min(i, n-1) in slot i, [negative, positive] stacked.
    negatives = [image_features(adapter, path) for path, _, _ in side(case, 'negative_images')]
    positive = torch.stack([image_features(adapter, path)[0] for path, _, _ in positives])
    negative = torch.stack([negatives[min(i, len(negatives) - 1)][0] for i in range(len(positives))])
    kwargs['ip_adapter_image_embeds'] = [torch.stack([negative, positive])]
    return kwargs


def custom_arguments(adapter, case, pipe, tensors):
    """HalfMaskProcessor in every attn2: the slots of both halves, padded to one count."""
    halves = []
    for key, half in (('negative_images', 'uncond'), ('images', 'cond')):
        entries = side(case, key)
        masks = fitted(case, [mask for _, mask, _ in entries])
        save_masks(case, tensors, half, masks)
        slots = [(image_features(adapter, path), (mask, weight))
                 for (path, _, weight), mask in zip(entries, masks)]
        halves.append(slots)
    count = max(len(h) for h in halves)
    empty = empty_features(adapter)
    halves = [h + [(empty, (None, 0.0))] * (count - len(h)) for h in halves]
    embeds = torch.stack([torch.stack([f[0] for f, _ in h]) for h in halves])
    slots = [[halves[0][i][1], halves[1][i][1]] for i in range(count)]
    scales = (case.get('negative_ip_weight', case['ip_weight']), case['ip_weight'])
    processors = pipe.unet.attn_processors
    for key in processors:
        if key.endswith('attn2.processor'):
            processors[key] = HalfMaskProcessor(processors[key], slots, scales)
    pipe.unet.set_attn_processor(processors)
    return dict(ip_adapter_image_embeds=[embeds])


@torch.no_grad()
def run(adapter, case):
    name = f"{adapter}_{case['name']}"
    pipe = pipeline(adapter)
    tensors = {}
    build = custom_arguments if case['name'] == 'masked_negative' else stock_arguments
    kwargs = build(adapter, case, pipe, tensors)
    first_output = []
    hook = pipe.unet.register_forward_hook(lambda module, args, out: first_output.append(out[0].clone()))
    generator = torch.Generator('cpu').manual_seed(COMMON['seed'])
    result = pipe(prompt=COMMON['prompt'], num_inference_steps=COMMON['steps'], guidance_scale=COMMON['cfg'],
                  width=case['width'], height=case['height'], generator=generator, output_type='np',
                  **kwargs).images[0]
    hook.remove()
    tensors['unet_out_step0'] = first_output[0].contiguous()
    os.makedirs(os.path.join(OUT, name), exist_ok=True)
    Image.fromarray((result * 255).round().astype(np.uint8)).save(os.path.join(OUT, name, 'out.png'))
    save_file(tensors, os.path.join(OUT, name, 'tensors.safetensors'))
    print(name, 'image mean', float(result.mean()))


if __name__ == '__main__':
    make_mask_inputs()
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump({'common': COMMON, 'cases': CASES}, f, indent=1)
    picks = sys.argv[1:]
    for case in CASES:
        for adapter in case['adapters']:
            if not picks or any(pick in case['name'] for pick in picks):
                run(adapter, case)
