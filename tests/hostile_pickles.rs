//! Hostile PyTorch pickles, written opcode by opcode: each ends in one error line
//! naming the file, in bounded memory (checked in a child process under
//! `prlimit --as`), and no pickle is ever executed.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::DType;
use common::{capped_command, temp_dir};
use minus::weights::pickle::load_pickle;

/// Set in the child process: the file it loads.
const CHILD_FILE_VAR: &str = "MINUS_HOSTILE_PICKLE";
/// The child's address-space cap: the test harness plus the reader's bounds,
/// far below what either hostile pickle takes unbounded.
const CHILD_ADDRESS_SPACE_BYTES: u64 = 1 << 30;

/// A PyTorch-style zip holding `pickle` as `archive/data.pkl`.
fn torch_zip(path: &Path, pickle: &[u8]) {
    let file = std::fs::File::create(path).expect("create");
    let mut zip = zip::ZipWriter::new(file);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).expect("entry");
    zip.write_all(pickle).expect("write");
    zip.finish().expect("finish");
}

/// Lists of the same list, 30 deep: `l[i] = [l[i-1], l[i-1]]` by memo
/// references, 2^30 lists once expanded.
fn memo_fan_out_pickle() -> Vec<u8> {
    let mut pickle = vec![0x80, 2, b']', b'q', 0];
    for level in 1..=30u8 {
        pickle.extend([
            b']',
            b'(',
            b'h',
            level - 1,
            b'h',
            level - 1,
            b'e',
            b'q',
            level,
        ]);
    }
    pickle.push(b'.');
    pickle
}

/// A tuple in a tuple, 200,000 deep (MARK ×n, EMPTY_TUPLE, TUPLE ×n).
fn deep_pickle() -> Vec<u8> {
    const DEPTH: usize = 200_000;
    let mut pickle = vec![0x80, 2];
    pickle.extend(std::iter::repeat_n(b'(', DEPTH));
    pickle.push(b')');
    pickle.extend(std::iter::repeat_n(b't', DEPTH));
    pickle.push(b'.');
    pickle
}

/// Loads `file` in a child process capped at `CHILD_ADDRESS_SPACE_BYTES` (the
/// ignored test `child_loads_the_file`, run alone) and returns what it printed.
fn load_in_capped_child(file: &Path) -> String {
    let output = capped_command(
        CHILD_ADDRESS_SPACE_BYTES,
        std::env::current_exe().expect("test binary"),
    )
    .args([
        "child_loads_the_file",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD_FILE_VAR, file)
    .output()
    .expect("prlimit runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child failed or did not run ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The child's side, not a test of its own: ignored, so a plain run skips it, and run
/// only by `load_in_capped_child`, which names the file in `CHILD_FILE_VAR`.
#[test]
#[ignore = "the child process of the bounded-memory tests, run by them"]
fn child_loads_the_file() {
    let file = std::env::var_os(CHILD_FILE_VAR)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{CHILD_FILE_VAR} names no file: run by the other tests only"));
    match load_pickle(&file, DType::F32) {
        Ok(_) => println!("loaded"),
        Err(error) => println!("error: {error}"),
    }
}

fn assert_refused_in_bounded_memory(name: &str, pickle: &[u8], reason: &str) {
    let scratch = temp_dir(name);
    let file = scratch.join(format!("{name}.bin"));
    torch_zip(&file, pickle);
    let printed = load_in_capped_child(&file);
    // libtest prints the test's name on the same line, before the output.
    let line = printed
        .lines()
        .find_map(|line| line.find("error: ").map(|at| &line[at..]))
        .unwrap_or_else(|| panic!("no error line in:\n{printed}"));
    assert!(
        line.contains(&file.display().to_string()) && line.contains(reason),
        "{line}"
    );
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn memo_fan_out_is_read_in_bounded_memory() {
    let pickle = memo_fan_out_pickle();
    assert!(pickle.len() < 1000);
    // Shared, the lists are read at once; they hold no tensors.
    assert_refused_in_bounded_memory("memo-fan-out", &pickle, "holds no tensors");
}

#[test]
#[cfg_attr(
    not(target_os = "linux"),
    ignore = "the memory cap needs prlimit (util-linux, Linux)"
)]
fn deep_nesting_is_refused_without_overflowing_the_stack() {
    let pickle = deep_pickle();
    assert!(pickle.len() > 400_000);
    assert_refused_in_bounded_memory("deep", &pickle, "nests deeper than 100 levels");
}

#[test]
fn a_tensor_claiming_more_than_its_storage_holds_is_refused() {
    // {"w": _rebuild_tensor_v2(("storage", FloatStorage, "0", "cpu", 4), 0, (1<<40,), (1,))}
    // with a 16-byte storage: one error line, not a terabyte allocation.
    let mut pickle = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w'];
    pickle.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    pickle.extend([b'(', b'X', 7, 0, 0, 0]);
    pickle.extend(b"storage");
    pickle.extend(b"ctorch\nFloatStorage\n");
    pickle.extend([b'X', 1, 0, 0, 0, b'0', b'X', 3, 0, 0, 0]);
    pickle.extend(b"cpu");
    pickle.extend([b'K', 4, b't', b'Q', b'K', 0]);
    pickle.extend([
        0x8a, 6, 0, 0, 0, 0, 0, 1, 0x85, b'K', 1, 0x85, 0x89, b'N', b't', b'R',
    ]);
    pickle.extend([b's', b'.']);
    let dir = temp_dir("huge-shape");
    let file = dir.join("huge-shape.bin");
    let out = std::fs::File::create(&file).expect("create");
    let mut zip = zip::ZipWriter::new(out);
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", stored).expect("entry");
    zip.write_all(&pickle).expect("write");
    zip.start_file("archive/data/0", stored).expect("entry");
    zip.write_all(&[0u8; 16]).expect("write");
    zip.finish().expect("finish");
    let message = load_pickle(&file, DType::F32)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("huge-shape.bin") && message.contains("the storage holds 4"),
        "{message}"
    );
}

#[test]
fn globals_other_than_torch_tensors_are_never_called() {
    // {"w": os.system("echo pwned")}: recorded, not run, and not a tensor.
    let mut pickle = vec![0x80, 2, b'}', b'X', 1, 0, 0, 0, b'w'];
    pickle.extend(b"cos\nsystem\nX\x0a\x00\x00\x00echo pwned\x85R");
    pickle.extend([b's', b'.']);
    let scratch = temp_dir("global");
    let file = scratch.join("global.bin");
    torch_zip(&file, &pickle);
    let message = load_pickle(&file, DType::F32)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("global.bin") && message.contains("holds no tensors"),
        "{message}"
    );
}
