"""Makes tests/fixtures/extra: stock diffusers 0.42.1 runs (CPU, float32) on the tiny reference
models with settings the public reference cases do not cover (batch 2, odd sizes, Karras
sigmas, Euler a with the Plus adapter). Run with torch, diffusers and transformers installed."""
import torch, numpy as np, sys
from PIL import Image
from diffusers import StableDiffusionPipeline, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler
from transformers import CLIPVisionModelWithProjection
import os
F=os.path.join(os.path.dirname(__file__), '..', 'fixtures')
torch.set_num_threads(2)
enc=CLIPVisionModelWithProjection.from_pretrained(F+'/models/ip-adapter/models/image_encoder')
pipe=StableDiffusionPipeline.from_pretrained(F+'/models/sd15', image_encoder=enc, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
# The PIL backend, as the reference data has it: with torchvision installed, CLIPImageProcessor()
# switches to its torchvision version, whose resize differs slightly.
from transformers import CLIPImageProcessorPil as CLIPImageProcessor
pipe.feature_extractor=CLIPImageProcessor()
def run(name, adapter, sched, karras, steps, w, h, seed, n, scale, prompt):
    global pipe
    pipe=StableDiffusionPipeline.from_pretrained(F+'/models/sd15', safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_ip_adapter(F+'/models/ip-adapter', subfolder='models', weight_name=adapter, image_encoder_folder=None)
    pipe.set_ip_adapter_scale(scale)
    pipe.image_encoder=enc
    pipe.feature_extractor=CLIPImageProcessor()
    if sched=='dpm': pipe.scheduler=DPMSolverMultistepScheduler.from_config(pipe.scheduler.config, use_karras_sigmas=karras)
    else: pipe.scheduler=EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
    g=torch.Generator('cpu').manual_seed(seed)
    out=pipe(prompt=prompt, ip_adapter_image=Image.open(F+'/images/house.png'), num_inference_steps=steps, guidance_scale=6.5, width=w, height=h, generator=g, num_images_per_prompt=n, output_type='np').images
    for i,im in enumerate(out):
        Image.fromarray((im*255).round().astype(np.uint8)).save(os.path.join(F, 'extra', f'{name}_{i}.png'))
    print(name, out.shape)
run('dpmk', 'ip-adapter_sd15.safetensors', 'dpm', True, 12, 80, 112, 11, 2, 0.6, 'a snowy house')
run('eulera', 'ip-adapter-plus_sd15.safetensors', 'euler', False, 7, 136, 64, 123, 2, 0.9, '')

