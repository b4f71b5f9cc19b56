//! `minus generate` against hostile and odd input, run under an address-space cap
//! (`prlimit --as`) and a deadline: every case ends in a result or one error line,
//! never in an allocation abort or a hang.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{capped_command, fixtures, temp_dir};

/// Address space the binary may use: the tiny models need well under a gigabyte;
/// the failures this guards against asked for 9 GB and more.
const ADDRESS_SPACE_CAP_BYTES: u64 = 3 << 30;
/// Longer than any case needs; a hang ends here.
const DEADLINE: Duration = Duration::from_secs(120);

/// `minus generate` on the CPU with the tiny models (base adapter), `args` and
/// `--output output`, 64×64 unless `args` say, capped and with a deadline.
fn generate(args: &[&str], output: &Path) -> Output {
    let models = fixtures().join("models");
    let ip = models.join("ip-adapter/models");
    let binary = env!("CARGO_BIN_EXE_minus");
    let mut command = capped_command(ADDRESS_SPACE_CAP_BYTES, binary);
    command
        .args(["generate", "--device", "cpu", "--steps", "1"])
        .args(["--seed", "1"])
        .arg("--model")
        .arg(models.join("sd15"))
        .arg("--ip-adapter")
        .arg(ip.join("ip-adapter_sd15.safetensors"))
        .arg("--image-encoder")
        .arg(ip.join("image_encoder"))
        .args(args)
        // Small results unless the case sets the size itself.
        .args(if args.contains(&"--width") {
            &[][..]
        } else {
            &["--width", "64", "--height", "64"][..]
        })
        .arg("--output")
        .arg(output)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("minus starts");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > DEADLINE {
            // Only the child this test started.
            let _ = child.kill();
            panic!("minus {args:?} still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Asserts a run failed with exit code 1 and exactly one error line containing
/// every one of `expected`; returns that line.
fn assert_one_error(output: &Output, expected: &[&str]) -> String {
    assert_one_error_with_code(output, 1, expected)
}

/// A flag value the run cannot use is a usage error: exit code 2, as clap gives.
fn assert_usage_error(output: &Output, expected: &[&str]) -> String {
    assert_one_error_with_code(output, 2, expected)
}

fn assert_one_error_with_code(output: &Output, code: i32, expected: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(errors.len(), 1, "{stderr}");
    for part in expected {
        assert!(errors[0].contains(part), "expected `{part}` in {stderr}");
    }
    errors[0].to_string()
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn write_png(path: &Path, width: u32, height: u32) -> String {
    image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 7) as u8])
    })
    .save(path)
    .expect("write png");
    path.display().to_string()
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let made = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(made.success());
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn extreme_aspect_ratios_are_fitted_in_little_memory() {
    let dir = temp_dir("hostile-aspect");
    let tall = write_png(&dir.join("tall.png"), 1, 60_000);
    let wide = write_png(&dir.join("wide.png"), 60_000, 1);
    for fit in ["crop", "pad", "squash"] {
        let output = generate(
            &["--image", &tall, "--negative-image", &wide, "--fit", fit],
            &dir.join(format!("{fit}.png")),
        );
        assert_success(&output);
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn images_larger_than_the_decode_limits_are_refused_naming_the_file() {
    let dir = temp_dir("hostile-huge");
    // 70000 pixels wide: over the 65536 a side Minus decodes (a tiny file).
    let huge = write_png(&dir.join("huge.png"), 70_000, 1);
    let output = generate(&["--image", &huge], &dir.join("out.png"));
    assert_one_error(&output, &["huge.png", "too large"]);
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn image_paths_that_are_not_regular_files_are_refused() {
    let dir = temp_dir("hostile-kinds");
    let fifo = dir.join("fifo.png");
    mkfifo(&fifo);
    let fifo = fifo.display().to_string();
    let folder = dir.display().to_string();
    for (path, kind) in [
        ("/dev/zero", "a device"),
        (fifo.as_str(), "a FIFO"),
        (folder.as_str(), "a folder"),
    ] {
        let output = generate(&["--image", path], &dir.join("out.png"));
        assert_one_error(&output, &[path, "not a regular file", kind]);
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn numbers_that_are_not_finite_or_in_range_are_refused() {
    let dir = temp_dir("hostile-numbers");
    let house = fixtures().join("images/house.png").display().to_string();
    for (flag, value, name) in [
        ("--ip-weight", "nan", "image prompt weight"),
        (
            "--negative-ip-weight",
            "inf",
            "negative image prompt weight",
        ),
        ("--cfg", "-inf", "CFG scale"),
        ("--ip-end", "NaN", "image prompt end"),
        ("--image-weights", "1e400", "weight of"),
    ] {
        let output = generate(
            &["--image", &house, &format!("{flag}={value}")],
            &dir.join("out.png"),
        );
        assert_usage_error(&output, &[name, "must be a number"]);
    }
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn a_run_too_large_for_memory_is_refused_before_it_starts() {
    let dir = temp_dir("hostile-memory");
    let output = generate(
        &["--width", "4096", "--height", "4096", "--batch", "64"],
        &dir.join("out.png"),
    );
    assert_one_error(&output, &["needs about", "GiB is available"]);
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn outputs_are_written_in_the_format_their_extension_names() {
    let dir = temp_dir("hostile-formats");
    for (name, format) in [
        ("out.jpg", image::ImageFormat::Jpeg),
        ("out.jpeg", image::ImageFormat::Jpeg),
        ("out.webp", image::ImageFormat::WebP),
        ("out.png", image::ImageFormat::Png),
    ] {
        let path = dir.join(name);
        assert_success(&generate(&[], &path));
        let bytes = std::fs::read(&path).expect("written");
        assert_eq!(image::guess_format(&bytes).ok(), Some(format), "{name}");
    }
    let output = generate(&[], &dir.join("out.gif"));
    assert_one_error(&output, &["out.gif", "unknown image format"]);
    assert!(!dir.join("out.gif").exists());
}

#[cfg(unix)]
#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn an_output_path_that_is_not_a_regular_file_is_left_alone() {
    use std::os::unix::fs::FileTypeExt;
    let dir = temp_dir("hostile-output");
    let fifo = dir.join("fifo.png");
    mkfifo(&fifo);
    let target = dir.join("target.png");
    std::fs::write(&target, b"keep").expect("write");
    let link = dir.join("link.png");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    for (path, kind) in [(&fifo, "a FIFO"), (&link, "a symbolic link")] {
        let output = generate(&[], path);
        let shown = path.display().to_string();
        assert_one_error(&output, &[&shown, kind, "only writes over regular files"]);
    }
    assert!(
        std::fs::symlink_metadata(&fifo)
            .expect("fifo")
            .file_type()
            .is_fifo()
    );
    assert!(std::fs::symlink_metadata(&link).expect("link").is_symlink());
    assert_eq!(std::fs::read(&target).expect("target"), b"keep");
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
