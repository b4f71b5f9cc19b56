"""Runs `minus bench` and diffusers on the same random full-size weights and shapes, in one
go, and prints Minus / diffusers per figure (lower is better for Minus).

    pip install torch diffusers transformers safetensors pillow
    python bench/compare_diffusers.py --minus target/release/minus --size 512 --steps 4

The weights are those `minus bench` writes (random values in the real layouts); diffusers
loads them into freshly configured models, so both sides compute exactly the same shapes.

A shared VM's speed drifts by 10-30% over minutes, so `--rounds N` alternates the two sides
N times (Minus, diffusers, Minus, ...) and prints each round's ratios and their median.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import tempfile
import time

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection


def timed(repeats, fn, sync):
    fn()
    sync()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_state(model, path, prefix=""):
    state = load_file(path)
    if prefix:
        state = {k if k.startswith(prefix) else prefix + k: v for k, v in state.items()}
    missing, _ = model.load_state_dict(state, strict=False)
    return missing


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minus", default="target/release/minus")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--adapter", default="plus", choices=["base", "plus"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, choices=[None, "f32", "f16", "bf16"])
    parser.add_argument("--weights-dir", default=None)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    minus = run_minus(args)
    pipe, encoder, text = load_diffusers(args, minus)
    rounds = []
    for round_index in range(max(1, args.rounds)):
        if round_index > 0:
            minus = run_minus(args)
        rounds.append((minus, time_diffusers(args, minus, pipe, encoder, text)))
    report(args, rounds)


def run_minus(args):
    """Runs `minus bench` and returns its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        figures_path = os.path.join(tmp, "minus.json")
        command = [args.minus, "bench", "--size", str(args.size), "--steps", str(args.steps),
                   "--batch", str(args.batch), "--repeats", str(args.repeats), "--adapter", args.adapter,
                   "--device", args.device, "--json", figures_path]
        if args.dtype:
            command += ["--dtype", args.dtype]
        if args.weights_dir:
            command += ["--weights-dir", args.weights_dir]
        subprocess.run(command, check=True)
        with open(figures_path) as f:
            return json.load(f)


def load_diffusers(args, minus):
    """The diffusers pipeline on the weights Minus wrote, and its image and text encoders."""
    weights = minus["weights_dir"]
    device, dtype, _ = torch_setup(minus)
    torch.set_num_threads(minus["threads"])

    sd = os.path.join(weights, "sd15")
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(os.path.join(sd, "unet")))
    assert not load_state(unet, os.path.join(sd, "unet", "diffusion_pytorch_model.safetensors"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(sd, "vae")))
    load_state(vae, os.path.join(sd, "vae", "diffusion_pytorch_model.safetensors"))  # decoder only
    text = CLIPTextModel(CLIPTextConfig.from_pretrained(os.path.join(sd, "text_encoder")))
    load_state(text, os.path.join(sd, "text_encoder", "model.safetensors"))
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig.from_pretrained(os.path.join(weights, "image_encoder")))
    assert not load_state(encoder, os.path.join(weights, "image_encoder", "model.safetensors"))
    from transformers import CLIPTokenizer  # noqa: F401  (the pipeline needs a tokenizer object)
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=text, tokenizer=None, unet=unet, scheduler=DDIMScheduler(
            beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1,
            clip_sample=False, set_alpha_to_one=False),
        safety_checker=None, feature_extractor=None, image_encoder=encoder, requires_safety_checker=False)
    adapter_file = "ip-adapter-plus_sd15.safetensors" if args.adapter == "plus" else "ip-adapter_sd15.safetensors"
    pipe.load_ip_adapter(weights, subfolder="", weight_name=adapter_file, image_encoder_folder=None)
    pipe.image_encoder = encoder
    pipe.to(device, dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe, encoder, text


def torch_setup(minus):
    device = torch.device("cuda" if minus["device"] == "cuda" else "cpu")
    dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[minus["dtype"]]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    return device, dtype, sync


def time_diffusers(args, minus, pipe, encoder, text):
    """diffusers' seconds for the figures Minus reports, in Minus's order."""
    device, dtype, sync = torch_setup(minus)
    n, latent = args.batch, args.size // 8
    pixels = torch.randn(1, 3, 224, 224, device=device, dtype=dtype)
    with torch.no_grad():
        if args.adapter == "plus":
            encode = lambda: encoder(pixels, output_hidden_states=True).hidden_states[-2]
        else:
            encode = lambda: encoder(pixels).image_embeds
        encoder_secs = timed(args.repeats, encode, sync)

        features = encode()
        embeds = torch.cat([features, features])[:, None]  # [negative, positive]
        tokens_2n = pipe.unet.encoder_hid_proj.image_projection_layers[0](torch.cat([features] * (2 * n)))
        latents = torch.randn(n, 4, latent, latent, device=device, dtype=dtype)
        sample = torch.cat([latents, latents])  # [uncond, cond], as the pipeline passes them
        hidden = torch.randn(2 * n, 77, 768, device=device, dtype=dtype)
        pipe.set_ip_adapter_scale(1.0)
        step = lambda: pipe.unet(sample, 500, encoder_hidden_states=hidden,
                                 added_cond_kwargs={"image_embeds": [torch.cat([features] * (2 * n))[:, None]]})
        del tokens_2n
        step_secs = timed(args.repeats, step, sync)

        latents = torch.randn(n, 4, latent, latent, device=device, dtype=dtype)
        vae_secs = timed(args.repeats, lambda: pipe.vae.decode(latents / 0.18215), sync)

        # The same work as Minus's full run: both prompts ("" as CLIP tokenizes it) through the
        # text encoder, the one prompt image (also the negative one) through the image encoder.
        empty_ids = torch.tensor([[49406] + [49407] * 76], device=device)
        start = time.perf_counter()
        prompt = text(empty_ids)[0]
        negative_prompt = text(empty_ids)[0]
        features = encode()
        embeds = torch.cat([features, features])[:, None]
        pipe(prompt_embeds=prompt, negative_prompt_embeds=negative_prompt, ip_adapter_image_embeds=[embeds],
             num_inference_steps=args.steps, height=args.size, width=args.size, guidance_scale=7.5,
             num_images_per_prompt=n, output_type="np")
        sync()
        full_secs = time.perf_counter() - start

    return [encoder_secs, step_secs, vae_secs, full_secs]


FIGURES = [
    ("image encoder (1 image)", "image_encoder_secs"),
    ("UNet step (CFG batch)", "unet_step_secs"),
    ("VAE decode", "vae_decode_secs"),
    ("full run", "full_run_secs"),
]


def report(args, rounds):
    """Prints each round's figures and ratios, then the median ratio per figure."""
    minus = rounds[0][0]
    n = args.batch
    device, _, _ = torch_setup(minus)
    print(f"\n{minus['device']} {minus['dtype']}, {args.size}x{args.size}, batch {n}, {args.steps} steps, "
          f"adapter {args.adapter}, {minus['threads']} threads, torch {torch.__version__}")
    for index, (figures, theirs) in enumerate(rounds):
        if len(rounds) > 1:
            print(f"round {index + 1}")
        print(f"{'figure':<26}{'Minus s':>10}{'diffusers s':>13}{'Minus/diffusers':>17}")
        for (name, key), their_secs in zip(FIGURES, theirs):
            ours = figures[key]
            print(f"{name:<26}{ours:>10.3f}{their_secs:>13.3f}{ours / their_secs:>17.2f}")
        print(f"{'preview':<26}{figures['preview_secs']:>10.4f}{'(none)':>13}")
    if len(rounds) > 1:
        print(f"median over {len(rounds)} rounds")
        for column, (name, key) in enumerate(FIGURES):
            ratios = [figures[key] / theirs[column] for figures, theirs in rounds]
            listed = " ".join(f"{r:.2f}" for r in ratios)
            print(f"{name:<26}{statistics.median(ratios):>6.2f}   ({listed})")
    # Both processes load the same weights, so resident peaks compare like for like.
    diffusers_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    peak_mb = max(figures["peak_rss_mb"] for figures, _ in rounds)
    print(f"peak resident memory: Minus {peak_mb:.0f} MB, diffusers {diffusers_rss_mb:.0f} MB")
    if device.type == "cuda":
        print(f"diffusers peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")

if __name__ == "__main__":
    main()
