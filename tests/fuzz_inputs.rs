//! A bounded, seeded fuzz run over the files Minus reads from anywhere: a PNG with
//! settings, a safetensors header, a pickle (bare and inside its zip), and images through
//! decoding and preprocessing. Each mutation must end in a value or a clean error: a panic
//! fails the test, and the run happens in a child process under an address-space cap, so an
//! abort or runaway memory fails it too.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::{capped_command, fixtures, temp_dir};
use minus::output::{encode_png, read_settings};
use minus::pipeline::Request;
use minus::pipeline::preprocess::{FitMode, clip_pixel_values, decode_rgb};
use minus::weights::TensorFile;
use minus::weights::bounded_pickle::{LIMITS, read};
use minus::weights::pickle::load_pickle;

/// Mutations per input kind.
const ROUNDS: usize = 2_000;
/// The child's address-space cap: far above what one bounded read needs.
const MEMORY_CAP_BYTES: u64 = 4 << 30;

/// xorshift64*: a seeded, reproducible stream of mutations.
struct Mutator(u64);

impl Mutator {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A copy of `input` with one to four edits, mostly in its first `hot` bytes.
    fn mutate(&mut self, input: &[u8], hot: usize) -> Vec<u8> {
        let mut bytes = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let span = if self.below(4) == 0 {
                bytes.len()
            } else {
                hot.min(bytes.len())
            };
            let at = self.below(span);
            match self.below(6) {
                0 => {
                    if let Some(b) = bytes.get_mut(at) {
                        *b ^= 1 << self.below(8);
                    }
                }
                1 => {
                    if let Some(b) = bytes.get_mut(at) {
                        *b = [0, 0xff, 0x7f, 0x80, b'9', b'}'][self.below(6)];
                    }
                }
                2 => bytes.truncate(at),
                3 => {
                    let end = (at + 1 + self.below(16)).min(bytes.len());
                    bytes.drain(at.min(end)..end);
                }
                4 => {
                    let chunk: Vec<u8> =
                        (0..1 + self.below(16)).map(|_| self.next() as u8).collect();
                    let at = at.min(bytes.len());
                    bytes.splice(at..at, chunk);
                }
                _ => {
                    // A large little-endian number where a length or count may sit.
                    let value = [u64::MAX, 1 << 40, 1 << 31, 0][self.below(4)].to_le_bytes();
                    for (i, v) in value.iter().enumerate() {
                        if let Some(b) = bytes.get_mut(at + i) {
                            *b = *v;
                        }
                    }
                }
            }
        }
        bytes
    }
}

fn png_with_settings() -> Vec<u8> {
    let image =
        image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
    let request = Request {
        prompt: "a house in winter".to_string(),
        seed: 42,
        ..Request::default()
    };
    encode_png(&image, &request, "fuzz").expect("encode")
}

fn small_safetensors(dir: &Path) -> Vec<u8> {
    let device = Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        (
            "image_proj.norm.weight",
            Tensor::ones(8, candle_core::DType::F32, &device),
        ),
        (
            "a.b",
            Tensor::zeros((2, 3), candle_core::DType::F16, &device),
        ),
    ]
    .into_iter()
    .map(|(name, tensor)| Ok((name.to_string(), tensor?)))
    .collect::<candle_core::Result<_>>()
    .expect("tensors");
    let path = dir.join("seed.safetensors");
    candle_core::safetensors::save(&tensors, &path).expect("save");
    std::fs::read(&path).expect("read back")
}

/// The entries of a zip (a `.ckpt`/`.bin`), in order.
fn zip_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let file = std::fs::File::open(path).expect("fixture");
    let mut archive = zip::ZipArchive::new(file).expect("zip");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("entry");
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).expect("entry bytes");
            (entry.name().expect("entry name").to_string(), bytes)
        })
        .collect()
}

fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let file = std::fs::File::create(path).expect("zip file");
    let mut writer = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        writer
            .start_file(name.as_str(), options)
            .expect("zip entry");
        writer.write_all(bytes).expect("zip write");
    }
    writer.finish().expect("zip finish");
}

/// The fuzz run itself; `every_hostile_input_ends_cleanly` runs it in a capped child.
#[test]
#[ignore = "run by every_hostile_input_ends_cleanly under a memory cap"]
fn fuzz_run() {
    let dir = temp_dir("fuzz");
    let mut mutator = Mutator(0x5eed_1234_abcd_0001);

    // A PNG with settings: the chunk reader and the decoder, as the gallery scan uses them.
    let png = png_with_settings();
    assert!(matches!(read_settings(&png), Ok(Some(_))));
    for _ in 0..ROUNDS {
        let bytes = mutator.mutate(&png, png.len());
        let _ = read_settings(&bytes);
        let _ = decode_rgb(&bytes);
    }

    // A safetensors header, read from a file as models are.
    let safetensors = small_safetensors(&dir);
    let header_end = 8 + u64::from_le_bytes(safetensors[..8].try_into().expect("8 bytes")) as usize;
    let path = dir.join("mutated.safetensors");
    for _ in 0..ROUNDS {
        std::fs::write(&path, mutator.mutate(&safetensors, header_end)).expect("write");
        let _ = TensorFile::load_safetensors(&path, DType::F32);
    }

    // A pickle: bare through the bounded reader, and inside its zip through the loader.
    let entries = zip_entries(&fixtures().join("bin/tiny_state_dict.ckpt"));
    let pickle_index = entries
        .iter()
        .position(|(name, _)| name.ends_with("data.pkl"))
        .expect("data.pkl");
    let pickle = entries[pickle_index].1.clone();
    let path = dir.join("mutated.ckpt");
    for round in 0..ROUNDS {
        let mutated = mutator.mutate(&pickle, pickle.len());
        let _ = read(&mutated, LIMITS);
        if round % 4 == 0 {
            let mut zipped = entries.clone();
            zipped[pickle_index].1 = mutated;
            write_zip(&path, &zipped);
            let _ = load_pickle(&path, DType::F32);
        }
    }
    let ckpt = std::fs::read(fixtures().join("bin/tiny_state_dict.ckpt")).expect("ckpt");
    for _ in 0..ROUNDS / 4 {
        std::fs::write(&path, mutator.mutate(&ckpt, ckpt.len())).expect("write");
        let _ = load_pickle(&path, DType::F32);
    }

    // Images of each format through decoding and every fit.
    for name in ["house.png", "gray.jpg", "sticker_rgba.png"] {
        let image = std::fs::read(fixtures().join("images").join(name)).expect("image");
        for round in 0..ROUNDS / 4 {
            let bytes = mutator.mutate(&image, 256);
            if let Ok(rgb) = decode_rgb(&bytes) {
                let fit = FitMode::ALL[round % FitMode::ALL.len()];
                assert_eq!(clip_pixel_values(&rgb, 224, fit).len(), 3 * 224 * 224);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn every_hostile_input_ends_cleanly() {
    let exe = std::env::current_exe().expect("test binary");
    let args = [
        "fuzz_run",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ];
    // Under an address-space cap, so an abort or runaway memory shows.
    let output = capped_command(MEMORY_CAP_BYTES, &exe)
        .args(args)
        .output()
        .expect("run the fuzz");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the fuzz run failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the fuzz run did not run:\n{text}"
    );
}
