//! What the GPU-readiness changes promise, checked on the CPU: the VAE decodes one
//! image at a time with the batched result bit for bit, and weight files are read
//! through a map into host memory already in the run's dtype, `.fp16` variants first
//! for f16 runs, with hostile files still refused by name.

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{fixtures, temp_dir};
use minus::pipeline::models::load_vae;
use minus::rng::TorchRng;
use minus::weights::TensorFile;
use minus::weights::diffusers::find_weights_file;

fn decoded_one_by_one_and_batched(dtype: DType) -> candle_core::Result<(Tensor, Tensor)> {
    // The CPU's f32 kernels, the path the parity tests pin down.
    let vae = load_vae(
        &fixtures().join("models/sd15/vae"),
        &Device::Cpu,
        dtype,
        false,
    )
    .map_err(candle_core::Error::wrap)?;
    let latents = Tensor::randn(0f32, 1f32, (3, 4, 8, 8), &Device::Cpu)?.to_dtype(dtype)?;
    Ok((vae.decode(&latents)?, vae.decode_batched(&latents)?))
}

#[test]
fn per_image_decoding_equals_batched_decoding_bit_for_bit() -> candle_core::Result<()> {
    let (one_by_one, batched) = decoded_one_by_one_and_batched(DType::F32)?;
    assert_eq!(one_by_one.dims(), batched.dims());
    let bits = |t: &Tensor| -> candle_core::Result<Vec<u32>> {
        let values = t.flatten_all()?.to_vec1::<f32>()?;
        Ok(values.into_iter().map(f32::to_bits).collect())
    };
    let (a, b) = (bits(&one_by_one)?, bits(&batched)?);
    assert!(a == b, "per-image decode differs from the batched one");
    // The images differ from each other: the batch was not decoded as one image thrice.
    let first = one_by_one.narrow(0, 0, 1)?;
    let second = one_by_one.narrow(0, 1, 1)?;
    let apart = (first - second)?.abs()?.sum_all()?;
    assert!(apart.to_scalar::<f32>()? > 0.0);
    Ok(())
}

#[test]
fn per_image_decoding_equals_batched_decoding_in_f16_too() -> candle_core::Result<()> {
    // candle's Linear paths (every dtype but CPU f32): the mid block's attention once
    // got every image after the first wrong when batched.
    let (one_by_one, batched) = decoded_one_by_one_and_batched(DType::F16)?;
    let apart = (one_by_one - batched)?
        .abs()?
        .to_dtype(DType::F32)?
        .max_all()?
        .to_scalar::<f32>()?;
    println!("f16: per-image vs batched max |Δ| {apart}");
    assert!(apart <= 2e-3, "max |Δ| {apart}");
    Ok(())
}

#[test]
fn very_large_latents_decode_in_tiles_close_to_the_whole_picture() -> candle_core::Result<()> {
    let vae = load_vae(
        &fixtures().join("models/sd15/vae"),
        &Device::Cpu,
        DType::F32,
        false,
    )
    .map_err(candle_core::Error::wrap)?;
    // 136 latents a side: above the tiling threshold of 128², three tiles per axis.
    let latents = TorchRng::new(7).randn_tensor(&[1, 4, 136, 136], &Device::Cpu)?;
    let tiled = vae.decode(&latents)?;
    assert_eq!(tiled.dims(), [1, 3, 1088, 1088]);
    // The same latents in one pass: what tiling approximates.
    let whole = vae.decode_batched(&latents)?;
    let range = whole.max_all()?.to_scalar::<f32>()? - whole.min_all()?.to_scalar::<f32>()?;
    let difference = (tiled - whole)?.abs()?;
    let max = difference.max_all()?.to_scalar::<f32>()?;
    let mean = difference.mean_all()?.to_scalar::<f32>()?;
    println!("tiled vs whole decode: max |Δ| {max:.4}, mean |Δ| {mean:.5}, range {range:.3}");
    // Measured (CPU f32, these latents): max |Δ| 0.3131 and mean |Δ| 0.01419 over a range
    // of 6.32 (5% and 0.22% of it). Tiles see their own GroupNorm statistics and
    // attention, so they differ most next to the seams; the limits sit just above.
    assert!(max > 0.0, "the decode was not tiled");
    assert!(max <= 0.32, "tiled vs whole: max |Δ| {max}");
    assert!(mean <= 0.015, "tiled vs whole: mean |Δ| {mean}");
    Ok(())
}

fn write_weights(path: &std::path::Path) -> candle_core::Result<()> {
    let mut tensors = HashMap::new();
    tensors.insert(
        "weight".to_string(),
        (Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((2, 3))? / 3.0)?,
    );
    tensors.insert(
        "position_ids".to_string(),
        Tensor::arange(0i64, 4, &Device::Cpu)?,
    );
    candle_core::safetensors::save(&tensors, path)
}

#[test]
fn weights_are_read_in_the_run_dtype_into_host_memory() -> anyhow::Result<()> {
    let scratch = temp_dir("gpu-load");
    let path = scratch.join("w.safetensors");
    write_weights(&path)?;
    let file = TensorFile::load_safetensors(&path, DType::F16)?;
    let weight = file.get("weight").expect("weight read");
    assert_eq!(weight.dtype(), DType::F16);
    assert!(weight.device().is_cpu());
    let expected = (Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((2, 3))? / 3.0)?;
    let back = weight.to_dtype(DType::F32)?;
    let off = (back - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
    assert!(off < 1e-3, "{off}");
    // Token ids are no float: they keep their type.
    assert_eq!(
        file.get("position_ids").map(Tensor::dtype),
        Some(DType::I64)
    );
    let f32_file = TensorFile::load_safetensors(&path, DType::F32)?;
    assert_eq!(f32_file.get("weight").map(Tensor::dtype), Some(DType::F32));
    Ok(())
}

#[test]
fn f16_runs_take_the_fp16_variant_and_f32_runs_the_plain_file() -> anyhow::Result<()> {
    let scratch = temp_dir("gpu-variants");
    let dir = scratch.join("unet");
    std::fs::create_dir_all(&dir)?;
    for name in [
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.fp16.safetensors",
    ] {
        write_weights(&dir.join(name))?;
    }
    let name = |dtype| -> anyhow::Result<String> {
        let path = find_weights_file(&dir, dtype)?;
        Ok(path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned())
    };
    assert_eq!(
        name(DType::F16)?,
        "diffusion_pytorch_model.fp16.safetensors"
    );
    assert_eq!(name(DType::F32)?, "diffusion_pytorch_model.safetensors");
    std::fs::remove_file(dir.join("diffusion_pytorch_model.fp16.safetensors"))?;
    assert_eq!(name(DType::F16)?, "diffusion_pytorch_model.safetensors");
    Ok(())
}

#[test]
fn mapped_reading_still_refuses_hostile_files_by_name() -> anyhow::Result<()> {
    let dir = temp_dir("gpu-hostile");
    let whole = dir.join("whole.safetensors");
    write_weights(&whole)?;
    let bytes = std::fs::read(&whole)?;
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() - 5])?;
    let huge_header = dir.join("huge-header.safetensors");
    let mut huge = (1u64 << 40).to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    std::fs::write(&huge_header, huge)?;
    let empty = dir.join("empty.safetensors");
    std::fs::write(&empty, b"")?;
    let mut cases = vec![
        (truncated, "not a readable safetensors file"),
        (huge_header, "not a readable safetensors file"),
        (empty, "not a readable safetensors file"),
        (dir.to_path_buf(), "not a regular file"),
    ];
    #[cfg(unix)]
    {
        let fifo = dir.join("pipe.safetensors");
        let _ = std::fs::remove_file(&fifo);
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()?
                .success()
        );
        cases.push((fifo, "a FIFO"));
    }
    for (path, why) in cases {
        let message = TensorFile::load_safetensors(&path, DType::F32)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(why), "{path:?}: {message}");
    }
    Ok(())
}
