//! `auto`'s fallback and a named GPU's error, through the probe seam: a GPU that
//! panics while opening or in its first test, one whose opening fails, Metal on a
//! macOS that is too old, and the first test's number format.
//!
//! The line checked here is what the user reads: `minus generate` and `minus bench`
//! print `ChosenDevice::fallback` as it is, and the window shows it as the models'
//! warning (`app::status`).

use std::cell::Cell;

use super::*;

pub(super) fn no_refusal(_: Gpu) -> Option<String> {
    None
}

pub(super) fn opens_the_cpu(_: Gpu) -> candle_core::Result<Device> {
    Ok(Device::Cpu)
}

pub(super) fn passing_test(_: &Device, _: DType) -> candle_core::Result<()> {
    Ok(())
}

fn panicking_open(_: Gpu) -> candle_core::Result<Device> {
    panic!("class MTLResidencySetDescriptor could not be found")
}

fn failing_open(_: Gpu) -> candle_core::Result<Device> {
    candle_core::bail!("DriverError(CUDA_ERROR_INSUFFICIENT_DRIVER)\nbacktrace line")
}

fn panicking_test(_: &Device, _: DType) -> candle_core::Result<()> {
    panic!("{}", String::from("index out of bounds: the len is 0"))
}

/// `choice` for a run in the default dtype on a machine whose GPU is `gpu`, opened by
/// `open` (the CPU stands in for a GPU) and tested by `smoke_test`.
pub(super) fn select(
    choice: DeviceChoice,
    gpu: Gpu,
    open: &dyn Fn(Gpu) -> candle_core::Result<Device>,
    smoke_test: &dyn Fn(&Device, DType) -> candle_core::Result<()>,
) -> Result<ChosenDevice> {
    select_device_with(
        choice,
        None,
        &DeviceProbe {
            find_gpu: &|| Some(gpu),
            refusal: &no_refusal,
            open,
            smoke_test,
        },
    )
}

/// The fallback line of `auto`, which must have landed on the CPU.
fn fallback_line(chosen: Result<ChosenDevice>) -> String {
    match chosen {
        Ok(chosen) => {
            assert!(chosen.device.is_cpu(), "a failing GPU was kept");
            chosen.fallback.unwrap_or_default()
        }
        Err(error) => panic!("auto must fall back, not fail: {error}"),
    }
}

#[test]
fn a_gpu_that_panics_while_opening_falls_back_with_the_panic() {
    let line = fallback_line(select(
        DeviceChoice::Auto,
        Gpu::Metal,
        &panicking_open,
        &passing_test,
    ));
    assert_eq!(
        line,
        "Metal could not be opened (candle panicked: class MTLResidencySetDescriptor could not be found), so this runs on the CPU"
    );
}

#[test]
fn a_gpu_whose_first_test_panics_falls_back_with_the_panic() {
    let line = fallback_line(select(
        DeviceChoice::Auto,
        Gpu::Cuda,
        &opens_the_cpu,
        &panicking_test,
    ));
    assert_eq!(
        line,
        "CUDA failed a first test (candle panicked: index out of bounds: the len is 0), so this runs on the CPU"
    );
}

#[test]
fn a_gpu_that_cannot_be_opened_is_named_with_its_error() {
    let line = fallback_line(select(
        DeviceChoice::Auto,
        Gpu::Cuda,
        &failing_open,
        &passing_test,
    ));
    assert_eq!(
        line,
        "CUDA could not be opened (DriverError(CUDA_ERROR_INSUFFICIENT_DRIVER)), so this runs on the CPU"
    );
}

#[test]
fn a_gpu_asked_for_by_name_that_panics_is_an_error_naming_it() {
    for (choice, open, test, want) in [
        (
            DeviceChoice::Metal,
            &panicking_open as &dyn Fn(Gpu) -> candle_core::Result<Device>,
            &passing_test as &dyn Fn(&Device, DType) -> candle_core::Result<()>,
            "Metal could not be opened (candle panicked: class MTLResidencySetDescriptor could not be found)",
        ),
        (
            DeviceChoice::Cuda,
            &opens_the_cpu,
            &panicking_test,
            "CUDA failed a first test (candle panicked: index out of bounds: the len is 0)",
        ),
    ] {
        match select(choice, Gpu::Metal, open, test) {
            Err(MinusError::DeviceUnavailable(message)) => assert_eq!(message, want),
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{} was chosen despite its failure", choice.name()),
        }
    }
}

#[test]
fn metal_below_macos_15_is_not_tried_and_says_why() {
    let opened = Cell::new(false);
    let open = |_: Gpu| {
        opened.set(true);
        Ok(Device::Cpu)
    };
    let refusal = |gpu: Gpu| {
        (gpu == Gpu::Metal)
            .then(|| gpu::metal_refusal("14.6.1"))
            .flatten()
    };
    let probe = DeviceProbe {
        find_gpu: &|| Some(Gpu::Metal),
        refusal: &refusal,
        open: &open,
        smoke_test: &passing_test,
    };
    let line = fallback_line(select_device_with(DeviceChoice::Auto, None, &probe));
    assert_eq!(
        line,
        "Metal in this build needs macOS 15 (this Mac runs macOS 14.6.1), so this runs on the CPU"
    );
    match select_device_with(DeviceChoice::Metal, None, &probe) {
        Err(MinusError::DeviceUnavailable(message)) => assert_eq!(
            message,
            "Metal in this build needs macOS 15 (this Mac runs macOS 14.6.1)"
        ),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("Metal was chosen below macOS 15"),
    }
    assert!(!opened.get(), "Metal was opened below macOS 15");
}

#[test]
fn only_macos_below_15_refuses_metal() {
    for old in ["14.6.1", "13.0", "10.16"] {
        assert!(gpu::metal_refusal(old).is_some(), "{old}");
    }
    for new in ["15.0", "15.7.2", "26.1"] {
        assert_eq!(gpu::metal_refusal(new), None, "{new}");
    }
    // An unreadable version refuses nothing: opening is still caught if it panics.
    assert_eq!(gpu::metal_refusal("unknown"), None);
    // Never on another GPU, and never where the real probe runs (Linux, no Metal).
    assert_eq!(gpu::refusal(Gpu::Cuda), None);
}

#[test]
fn the_first_test_runs_in_the_runs_number_format() -> Result<()> {
    let cases = [
        (Some(DTypeChoice::F32), DType::F32),
        (Some(DTypeChoice::F16), DType::F16),
        (None, DType::F16),
        // bf16 has its own test in `resolve_dtype`, whose refusal says what it needs.
        (Some(DTypeChoice::Bf16), DType::F16),
    ];
    for (run_dtype, want) in cases {
        for choice in [DeviceChoice::Auto, DeviceChoice::Cuda] {
            let tested = Cell::new(None);
            let recording_test = |_: &Device, dtype: DType| {
                tested.set(Some(dtype));
                Ok(())
            };
            let probe = DeviceProbe {
                find_gpu: &|| Some(Gpu::Cuda),
                refusal: &no_refusal,
                open: &opens_the_cpu,
                smoke_test: &recording_test,
            };
            select_device_with(choice, run_dtype, &probe)?;
            assert_eq!(tested.get(), Some(want), "{run_dtype:?} with {choice:?}");
        }
    }
    Ok(())
}

#[test]
fn the_cpu_opens_nothing_and_tests_nothing() -> Result<()> {
    let probe = DeviceProbe {
        find_gpu: &|| Some(Gpu::Cuda),
        refusal: &no_refusal,
        open: &panicking_open,
        smoke_test: &panicking_test,
    };
    let chosen = select_device_with(DeviceChoice::Cpu, Some(DTypeChoice::F32), &probe)?;
    assert!(chosen.device.is_cpu() && chosen.fallback.is_none());
    Ok(())
}
