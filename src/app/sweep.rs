//! Sweeps: one setting varied over a few values, run as a batch of jobs and shown
//! as a labelled grid that can be saved as one image.

use std::collections::HashMap;
use std::sync::Arc;

use egui::TextureHandle;
use image::RgbImage;
use serde::{Deserialize, Serialize};

use super::method::Method;
use super::sweep_values::{parse_list, parse_values};
use crate::engine::JobId;
use crate::pipeline::Request;

/// The setting a sweep varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SweepParameter {
    #[default]
    NegativeWeight,
    Weight,
    NegativeStart,
    NegativeEnd,
    Cfg,
    Steps,
    Seed,
    /// The way to say "not this" (values are method names, see `Method::parse`).
    Method,
    /// Masks on or off (values are `on`, `off`, `+N`, `-N`, see `sweep_masks`).
    Masks,
}

impl SweepParameter {
    /// All parameters, in menu order.
    pub const ALL: [Self; 9] = [
        Self::NegativeWeight,
        Self::Weight,
        Self::NegativeStart,
        Self::NegativeEnd,
        Self::Cfg,
        Self::Steps,
        Self::Seed,
        Self::Method,
        Self::Masks,
    ];

    /// The label shown in menus and on the grid.
    pub fn label(self) -> &'static str {
        match self {
            Self::NegativeWeight => "negative weight",
            Self::Weight => "image weight",
            Self::NegativeStart => "negative start",
            Self::NegativeEnd => "negative end",
            Self::Cfg => "CFG",
            Self::Steps => "steps",
            Self::Seed => "seed",
            Self::Method => "method",
            Self::Masks => "masks on/off",
        }
    }

    /// The values a sweep over this parameter starts with. Each changes the picture
    /// at the default settings: the method list leaves out `k-v`, which at weight 1 is
    /// the seed's method by cubiq's own formula.
    pub fn default_values(self) -> &'static str {
        match self {
            Self::NegativeWeight | Self::Weight => "0, 0.5, 1, 1.5",
            Self::NegativeStart => "0, 0.25, 0.5, 0.75",
            Self::NegativeEnd => "0.25, 0.5, 0.75, 1",
            Self::Cfg => "3, 5, 7.5, 10",
            Self::Steps => "10, 20, 30",
            Self::Seed => "1, 2, 3, 4",
            Self::Method => "seed, off, noise, subtract, ease-in, k-v-c-penalty",
            Self::Masks => "on, off",
        }
    }

    /// One request and its grid label per value of `values` (comma separated: numbers,
    /// method names for a method sweep, mask switches for a mask sweep).
    pub fn requests(self, base: &Request, values: &str) -> Result<Vec<(Request, String)>, String> {
        if self == Self::Masks {
            return super::sweep_masks::mask_requests(base, values);
        }
        if self == Self::Method {
            return Ok(parse_list(values, Method::parse)?
                .into_iter()
                .map(|method| (method.apply(base), method.label()))
                .collect());
        }
        Ok(parse_values(values)?
            .into_iter()
            .map(|value| (self.apply(base, value), format!("{} {value}", self.label())))
            .collect())
    }

    /// A copy of `request` with this parameter set to `value` (a number leaves the
    /// method and the masks alone: their sweeps' values are names, see `requests`).
    pub fn apply(self, request: &Request, value: f64) -> Request {
        let mut request = request.clone();
        match self {
            Self::NegativeWeight => request.negative_ip_weight = value,
            Self::Weight => request.ip_weight = value,
            Self::NegativeStart => request.negative_ip_window.start = value,
            Self::NegativeEnd => request.negative_ip_window.end = value,
            Self::Cfg => request.cfg = value,
            Self::Steps => request.steps = value.round().max(1.0) as usize,
            Self::Seed => request.seed = value.round().max(0.0) as u64,
            Self::Method | Self::Masks => {}
        }
        request
    }
}

/// Sweep settings as typed by the user (persisted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SweepSettings {
    pub parameter: SweepParameter,
    /// Comma-separated values.
    pub values: String,
}

impl Default for SweepSettings {
    fn default() -> Self {
        let parameter = SweepParameter::default();
        Self {
            parameter,
            values: parameter.default_values().to_string(),
        }
    }
}

impl SweepSettings {
    /// Switches the sweep to vary `parameter`, with that parameter's starting values
    /// in the field (a weight's numbers are no methods, and no step counts).
    pub fn vary(&mut self, parameter: SweepParameter) {
        if parameter != self.parameter {
            self.parameter = parameter;
            self.values = parameter.default_values().to_string();
        }
    }
}

/// One cell of a running or finished sweep.
pub struct SweepCell {
    pub label: String,
    pub image: Option<(Arc<RgbImage>, TextureHandle)>,
}

/// A sweep whose jobs were queued.
pub struct Sweep {
    pub title: String,
    pub cells: Vec<SweepCell>,
    index: HashMap<JobId, usize>,
}

impl Sweep {
    /// A sweep over `cells` (job, label).
    pub fn new(title: String, cells: Vec<(JobId, String)>) -> Self {
        let index = cells
            .iter()
            .enumerate()
            .map(|(i, (job, _))| (*job, i))
            .collect();
        let cells = cells
            .into_iter()
            .map(|(_, label)| SweepCell { label, image: None })
            .collect();
        Self {
            title,
            cells,
            index,
        }
    }

    /// Records the first image of a finished job; false if the job is not part of the sweep.
    pub fn record(&mut self, job: JobId, image: Arc<RgbImage>, texture: TextureHandle) -> bool {
        match self.index.get(&job) {
            Some(&i) => {
                self.cells[i].image = Some((image, texture));
                true
            }
            None => false,
        }
    }

    /// Whether every cell has its image.
    pub fn is_complete(&self) -> bool {
        self.cells.iter().all(|cell| cell.image.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_reports_bad_ones() {
        assert_eq!(parse_values("0, 0.5,1 ,1.5"), Ok(vec![0.0, 0.5, 1.0, 1.5]));
        assert!(parse_values("0, x").unwrap_err().contains("`x`"));
        assert_eq!(
            parse_values(" , "),
            Err("a sweep needs at least one value".to_string())
        );
    }

    #[test]
    fn a_method_sweep_labels_each_method() {
        let requests = SweepParameter::Method
            .requests(&Request::default(), "seed, off, noise 0.5, subtract")
            .expect("methods parse");
        let labels: Vec<&str> = requests.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["seed", "off", "noise 0.5", "subtract"]);
        assert_eq!(requests[2].0.noise, 0.5);
        let not_a_method = SweepParameter::Method.requests(&Request::default(), "0.5");
        assert!(not_a_method.is_err_and(|e| e.contains("`0.5` is not a method")));
    }

    #[test]
    fn applies_each_parameter() {
        let base = Request::default();
        assert_eq!(
            SweepParameter::NegativeWeight
                .apply(&base, 0.5)
                .negative_ip_weight,
            0.5
        );
        assert_eq!(SweepParameter::Steps.apply(&base, 12.4).steps, 12);
        assert_eq!(SweepParameter::Seed.apply(&base, 7.0).seed, 7);
        assert_eq!(
            SweepParameter::NegativeEnd
                .apply(&base, 0.6)
                .negative_ip_window
                .end,
            0.6
        );
    }

    #[test]
    fn switching_what_varies_puts_that_parameters_values_in_the_field() {
        let mut sweep = SweepSettings::default();
        sweep.vary(SweepParameter::Method);
        assert_eq!(sweep.values, SweepParameter::Method.default_values());
        let masked = |path: &str| crate::pipeline::ImagePrompt {
            mask: Some(crate::pipeline::MaskFile::new("mask.png")),
            ..crate::pipeline::ImagePrompt::new(path)
        };
        let base = Request {
            images: vec![masked("a.png")],
            negative_images: vec![masked("b.png")],
            ..Request::default()
        };
        for parameter in SweepParameter::ALL {
            sweep.vary(parameter);
            let requests = parameter
                .requests(&base, &sweep.values)
                .unwrap_or_else(|e| panic!("{parameter:?}: {e}"));
            for (i, (a, _)) in requests.iter().enumerate() {
                for (b, _) in &requests[i + 1..] {
                    assert_ne!(a, b, "{parameter:?} repeats a setting");
                }
            }
        }
    }
}
