//! The settings column: prompts, adapter weights and windows, sampler, size, seed.

use std::path::PathBuf;

use egui::RichText;

use super::browse::{PathField, PickKind};
use super::fields::{choice_field, path_field, text_field};
use super::method::Method;
use super::settings::Settings;
use super::sweep::{SweepParameter, SweepSettings};
use crate::models::family::ModelFamily;
use crate::pipeline::preprocess::FitMode;
use crate::pipeline::request::ETA_RANGE;
use crate::pipeline::{
    Combine, EmbedsScaling, FinalDecode, PreviewKind, Request, WeightType, Window,
};
use crate::rng::random_seed;
use crate::schedulers::SamplerKind;

/// What the settings column asks the app to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    None,
    RunSweep,
    Browse(PathField, PickKind),
    /// Download TAESD for previews.
    DownloadTaesd,
}

/// Draws every generation setting, the output folder and the Sweep section;
/// `taesd_offer_mb` is the preview decoder's size when a button should offer to download
/// it (TAESD, or TAESDXL for an SDXL `family`).
pub fn settings_ui(
    ui: &mut egui::Ui,
    settings: &mut Settings,
    family: ModelFamily,
    taesd_offer_mb: Option<u64>,
) -> ControlAction {
    prompts_ui(ui, &mut settings.request);
    ui.separator();
    image_weights_ui(ui, &mut settings.request);
    ui.separator();
    sampling_ui(ui, &mut settings.request, family);
    seed_ui(ui, &mut settings.request.seed, &mut settings.random_seed);
    let request = &mut settings.request;
    ui.add(egui::Slider::new(&mut request.batch, 1..=8).text("Images per run"))
        .on_hover_text("How many images each run makes");
    choice_field(ui, "Fit", &mut request.fit, FitMode::ALL, FitMode::name).on_hover_text(
        "How non-square prompt images are made square: crop the middle, pad, or squash",
    );
    final_decode_ui(ui, &mut request.final_decode);
    ui.separator();
    [
        output_ui(ui, &mut settings.output_dir),
        preview_ui(ui, &mut settings.preview, taesd_offer_mb, family),
        sweep_ui(ui, &mut settings.sweep),
    ]
    .into_iter()
    .find(|action| *action != ControlAction::None)
    .unwrap_or(ControlAction::None)
}

/// The text prompts of the two halves of guidance.
fn prompts_ui(ui: &mut egui::Ui, request: &mut Request) {
    ui.label("Prompt");
    ui.add(
        egui::TextEdit::multiline(&mut request.prompt)
            .id_salt("prompt")
            .desired_rows(2)
            .hint_text("optional: image prompts work best without text"),
    )
    .on_hover_text("Text prompt for the conditioned half of guidance");
    ui.label("Negative prompt");
    ui.add(
        egui::TextEdit::multiline(&mut request.negative_prompt)
            .id_salt("negative prompt")
            .desired_rows(2),
    )
    .on_hover_text("Text for the unconditioned half: what to steer away from");
}

/// How strongly, and over which part of the run, each pane's images act.
fn image_weights_ui(ui: &mut egui::Ui, request: &mut Request) {
    ui.add(egui::Slider::new(&mut request.ip_weight, 0.0..=2.0).text("Image prompt weight"))
        .on_hover_text("IP-Adapter scale of the positive images (conditioned half)");
    ui.add(
        egui::Slider::new(&mut request.negative_ip_weight, 0.0..=2.0).text("Negative image weight"),
    )
    .on_hover_text("IP-Adapter scale of the negative images (unconditioned half)");
    window_ui(ui, "image", &mut request.ip_window);
    window_ui(ui, "negative", &mut request.negative_ip_window);
    methods_ui(ui, request);
}

/// Guidance, steps, the sampler and the picture size.
fn sampling_ui(ui: &mut egui::Ui, request: &mut Request, family: ModelFamily) {
    ui.add(egui::Slider::new(&mut request.cfg, 1.0..=20.0).text("CFG scale"))
        .on_hover_text("How strongly to follow the prompts (classifier-free guidance)");
    // The few-step samplers pick from 50 distilled timesteps.
    let max_steps = request.sampler.max_steps().min(150);
    ui.add(egui::Slider::new(&mut request.steps, 1..=max_steps).text("Steps"))
        .on_hover_text("Denoising steps: more is slower and usually cleaner");
    ui.horizontal(|ui| {
        choice_field(
            ui,
            "Sampler",
            &mut request.sampler,
            SamplerKind::ALL,
            SamplerKind::display_name,
        )
        .on_hover_text("The denoising algorithm");
        ui.add_enabled(
            request.sampler.supports_karras(),
            egui::Checkbox::new(&mut request.karras, "Karras"),
        )
        .on_hover_text("Karras noise schedule (Euler a, DPM++ 2M)");
    });
    if request.sampler.uses_eta() {
        ui.add(egui::Slider::new(&mut request.eta, ETA_RANGE).text("Eta"))
            .on_hover_text("TCD's randomness per step: 0 is deterministic, higher loses detail");
    }
    size_ui(ui, &mut request.width, &mut request.height, family);
}

/// The seed, a button for a new one, and whether each run draws its own.
fn seed_ui(ui: &mut egui::Ui, seed: &mut u64, random_each_run: &mut bool) {
    ui.horizontal(|ui| {
        ui.add_enabled(
            !*random_each_run,
            egui::DragValue::new(seed).prefix("Seed "),
        )
        .on_hover_text("Same seed + same settings = same image");
        if ui
            .button("New")
            .on_hover_text("Draw a new random seed now")
            .clicked()
        {
            *seed = random_seed();
        }
        ui.checkbox(random_each_run, "random each run")
            .on_hover_text("Unticked: reuse the seed shown (lock)");
    });
}

/// The folder every result is saved into (empty: none).
fn output_ui(ui: &mut egui::Ui, output_dir: &mut Option<PathBuf>) -> ControlAction {
    let mut output = output_dir
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let edit = path_field(
        ui,
        "Save results to",
        &mut output,
        "Every result is saved here (empty: off)",
        PathField::OutputDir,
    );
    if edit.response.changed() {
        *output_dir = (!output.trim().is_empty()).then(|| output.trim().into());
    }
    match edit.browse {
        Some(kind) => ControlAction::Browse(PathField::OutputDir, kind),
        None => ControlAction::None,
    }
}

/// How the picture is shown while it is denoised, and the offer to download TAESD.
fn preview_ui(
    ui: &mut egui::Ui,
    preview: &mut PreviewKind,
    taesd_offer_mb: Option<u64>,
    family: ModelFamily,
) -> ControlAction {
    ui.horizontal(|ui| {
        ui.label("Preview").on_hover_text("How the picture is shown while it is denoised");
        for kind in PreviewKind::ALL {
            let tooltip = match kind {
                PreviewKind::Taesd => {
                    "TAESD, a tiny decoder: looks like the picture (latent colours until it is downloaded)"
                }
                PreviewKind::LatentColours => {
                    "A colour map of the latents: blurry, but nearly free"
                }
            };
            ui.radio_value(preview, kind, kind.name())
                .on_hover_text(tooltip);
        }
    });
    let Some(approx_mb) = taesd_offer_mb else {
        return ControlAction::None;
    };
    let decoder = family.preview_decoder_name();
    let offer = ui.horizontal_wrapped(|ui| {
        ui.label(
            RichText::new(format!(
                "{decoder} is not downloaded (about {approx_mb} MB): previews use latent colours."
            ))
            .small(),
        );
        ui.small_button(format!("Download {decoder}"))
            .on_hover_text("Download it into the Hugging Face cache, then use it")
            .clicked()
    });
    if offer.inner {
        ControlAction::DownloadTaesd
    } else {
        ControlAction::None
    }
}

/// Whether the finished picture is decoded by TAESD (a draft) instead of the VAE.
fn final_decode_ui(ui: &mut egui::Ui, decode: &mut FinalDecode) {
    let mut fast = *decode == FinalDecode::Taesd;
    if ui
        .checkbox(&mut fast, "Fast final decode (TAESD)")
        .on_hover_text(
            "Decode the finished picture with TAESD, the previews' tiny decoder: a draft in \
             about a second on the CPU instead of half a minute, softer in fine detail \
             (needs TAESD downloaded)",
        )
        .changed()
    {
        *decode = if fast {
            FinalDecode::Taesd
        } else {
            FinalDecode::Vae
        };
    }
}

/// The Sweep section: one setting varied over a list of values.
fn sweep_ui(ui: &mut egui::Ui, sweep: &mut SweepSettings) -> ControlAction {
    let mut action = ControlAction::None;
    egui::CollapsingHeader::new("Sweep").show(ui, |ui| {
        let mut parameter = sweep.parameter;
        choice_field(
            ui,
            "vary",
            &mut parameter,
            SweepParameter::ALL,
            SweepParameter::label,
        )
        .on_hover_text("The setting that changes from run to run");
        // A new parameter brings its own starting values (a weight's are no methods).
        sweep.vary(parameter);
        text_field(
            ui,
            "values",
            &mut sweep.values,
            "Comma-separated values, one run each (masks on/off: on, off, +N for the \
             Nth image's mask off, -N for the Nth negative image's)",
        );
        if ui
            .button("Run sweep")
            .on_hover_text("Queue one run per value and show the results as a labelled grid")
            .clicked()
        {
            action = ControlAction::RunSweep;
        }
    });
    action
}

/// The field's other ways to say "not this" (cubiq's options), with the presets row.
fn methods_ui(ui: &mut egui::Ui, request: &mut Request) {
    egui::CollapsingHeader::new("Ways to say not this").show(ui, |ui| {
        ui.horizontal_wrapped(|ui| {
            for (label, method, tooltip) in Method::PRESETS {
                if ui.button(label).on_hover_text(tooltip).clicked() {
                    *request = method.apply(request);
                }
            }
        });
        ui.add(egui::Slider::new(&mut request.noise, 0.0..=1.0).text("Noise"))
            .on_hover_text("Unconditioned half sees warped, noised copies of the images (0 = off)");
        choice_field(ui, "Combine", &mut request.combine, Combine::ALL, Combine::name)
            .on_hover_text("How several positive images become one; subtract also removes the negatives");
        choice_field(ui, "Weight type", &mut request.weight_type, WeightType::ALL, WeightType::name)
            .on_hover_text("How the image weight is spread over the UNet's layers");
        choice_field(
            ui,
            "Negative weight type",
            &mut request.negative_weight_type,
            WeightType::ALL,
            WeightType::name,
        )
            .on_hover_text("How the negative weight is spread over the UNet's layers");
        choice_field(
            ui,
            "Embeds scaling",
            &mut request.embeds_scaling,
            EmbedsScaling::ALL,
            EmbedsScaling::display_name,
        )
        .on_hover_text("Where the weight enters the image attention: output, keys and values, or with a size penalty");
    });
}

fn window_ui(ui: &mut egui::Ui, label: &str, window: &mut Window) {
    ui.add(egui::Slider::new(&mut window.start, 0.0..=1.0).text(format!("{label} from")))
        .on_hover_text("Fraction of the run where this image prompt starts acting");
    ui.add(egui::Slider::new(&mut window.end, 0.0..=1.0).text(format!("{label} to")))
        .on_hover_text("Fraction of the run where it stops acting (1 = to the end)");
    if window.end < window.start {
        window.end = window.start;
    }
}

/// The size fields and the presets of the loaded model's family.
fn size_ui(ui: &mut egui::Ui, width: &mut usize, height: &mut usize, family: ModelFamily) {
    ui.horizontal(|ui| {
        ui.add(
            egui::DragValue::new(width)
                .range(64..=2048)
                .speed(8)
                .prefix("W "),
        )
        .on_hover_text("Width in pixels (a multiple of 8)");
        ui.add(
            egui::DragValue::new(height)
                .range(64..=2048)
                .speed(8)
                .prefix("H "),
        )
        .on_hover_text("Height in pixels (a multiple of 8)");
        egui::ComboBox::from_label("preset")
            .selected_text(format!("{}×{}", *width, *height))
            .show_ui(ui, |ui| {
                for &(w, h) in family.size_presets() {
                    if ui
                        .selectable_label(*width == w && *height == h, format!("{w}×{h}"))
                        .clicked()
                    {
                        (*width, *height) = (w, h);
                    }
                }
            });
    });
    *width = (*width / 8).max(1) * 8;
    *height = (*height / 8).max(1) * 8;
}
