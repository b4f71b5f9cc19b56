//! The SDXL bench weights load as Minus loads SDXL, and the bench's step runs on them.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use minus::models::family::ModelFamily;
use minus::models::unet::IpScales;
use minus::pipeline::Models;
use minus::weights::ModelPaths;

use super::super::bench_weights::{BenchWeights, ImageSizes};
use super::super::bench_weights_sdxl::{SdxlShapes, write_sdxl};
use super::step_context;

/// A folder removed when the test ends, passed or not.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The SDXL writer at the tiny fixture's sizes makes a folder and adapters Minus
/// loads as SDXL (each adapter's layers fitting the UNet's `attn2` layers), and the
/// bench's step runs on them with the added conditioning.
#[test]
fn written_sdxl_weights_load_and_take_a_step() -> anyhow::Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdxl/models");
    let image = ImageSizes {
        encoder_projection: 24,
        encoder_hidden: 32,
        resampler_dim: 64,
    };
    let mut shapes = SdxlShapes::from_folder(&fixtures.join("sdxl"), image)?;
    // Widths that differ from block to block, so layers out of order show.
    shapes.unet["block_out_channels"] = serde_json::json!([16, 32, 64]);
    let dir =
        TempDir(std::env::temp_dir().join(format!("minus-bench-sdxl-test-{}", std::process::id())));
    let weights = BenchWeights {
        model: dir.0.join("sdxl"),
        image_encoder: fixtures.join("ip-adapter/sdxl_models/image_encoder"),
        base_adapter: dir.0.join("base.safetensors"),
        plus_adapter: dir.0.join("plus.safetensors"),
        taesd: dir.0.join("taesdxl"),
    };
    write_sdxl(&weights, &shapes)?;
    for adapter in [&weights.base_adapter, &weights.plus_adapter] {
        let paths = ModelPaths {
            model: weights.model.clone(),
            ip_adapter: Some(adapter.clone()),
            image_encoder: Some(weights.image_encoder.clone()),
            ..ModelPaths::default()
        };
        let models = Models::load(&paths, &Device::Cpu, DType::F32)?;
        assert_eq!(models.family, ModelFamily::Sdxl);
        let pixels = Tensor::randn(0f32, 1f32, (1, 3, 224, 224), &Device::Cpu)?;
        let context = step_context(&models, &pixels, 2, 64)?;
        let layers = models.unet.cross_attention_channels().len();
        let scales = IpScales::uniform(Tensor::ones((2, 1, 1), DType::F32, &Device::Cpu)?, layers);
        let sample = Tensor::randn(0f32, 1f32, (2, 4, 8, 8), &Device::Cpu)?;
        let noise = models
            .unet
            .forward(&sample, 500.0, &context, Some(&scales))?;
        assert_eq!(noise.dims(), sample.dims());
    }
    Ok(())
}
