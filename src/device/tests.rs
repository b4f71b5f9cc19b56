use super::fallback_tests::{no_refusal, opens_the_cpu, passing_test, select};
use super::*;

fn failing_test(_: &Device, _: DType) -> candle_core::Result<()> {
    candle_core::bail!("no simdgroup_matrix\nbacktrace line")
}

#[test]
fn auto_falls_back_to_the_cpu_with_one_line_when_the_first_test_fails() -> Result<()> {
    let chosen = select(
        DeviceChoice::Auto,
        Gpu::Metal,
        &opens_the_cpu,
        &failing_test,
    )?;
    assert!(chosen.device.is_cpu());
    let notice = chosen.fallback.unwrap_or_default();
    assert_eq!(
        notice,
        "Metal failed a first test (no simdgroup_matrix), so this runs on the CPU"
    );
    Ok(())
}

#[test]
fn auto_keeps_a_gpu_that_passes_and_says_nothing() -> Result<()> {
    let chosen = select(
        DeviceChoice::Auto,
        Gpu::Metal,
        &opens_the_cpu,
        &passing_test,
    )?;
    assert!(chosen.fallback.is_none());
    let none = select_device_with(
        DeviceChoice::Auto,
        None,
        &DeviceProbe {
            find_gpu: &|| None,
            refusal: &no_refusal,
            open: &opens_the_cpu,
            smoke_test: &failing_test,
        },
    )?;
    assert!(none.device.is_cpu() && none.fallback.is_none());
    Ok(())
}

/// What `auto` must give on this machine, worked out from the GPU it has (if any)
/// and that GPU's own first test: holds on a CPU-only machine and on a GPU one.
#[test]
fn auto_takes_the_gpu_this_machine_has_or_the_cpu() -> Result<()> {
    let chosen = select_device(DeviceChoice::Auto, None)?;
    let usable = gpu::find().map(|gpu| match gpu::refusal(gpu) {
        Some(reason) => (gpu, Err(reason)),
        None => (gpu, gpu::without_panics(|| gpu::open(gpu))),
    });
    match usable {
        None => {
            assert!(chosen.device.is_cpu(), "no GPU, yet auto chose one");
            assert!(chosen.fallback.is_none(), "{:?}", chosen.fallback);
        }
        Some((gpu, Ok(device))) if smoke_test(&device, DType::F16).is_ok() => {
            assert_eq!(device_name(&chosen.device), device_name(&device), "{gpu:?}");
            assert!(chosen.fallback.is_none(), "{:?}", chosen.fallback);
        }
        Some((gpu, usable)) => {
            assert!(chosen.device.is_cpu());
            let notice = chosen.fallback.unwrap_or_default();
            let why = match usable {
                Ok(_) => format!("{} failed a first test", gpu.name()),
                Err(reason) if gpu::refusal(gpu).is_some() => reason,
                Err(_) => format!("{} could not be opened", gpu.name()),
            };
            assert!(notice.starts_with(&why), "{notice}");
        }
    }
    // The run's default number format follows the device.
    let expected = if chosen.device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    };
    assert_eq!(resolve_dtype(&chosen.device, None)?, expected);
    Ok(())
}

#[test]
fn a_device_asked_for_by_name_is_that_device_or_an_error_naming_it() -> Result<()> {
    let cpu = select_device(DeviceChoice::Cpu, None)?;
    assert!(cpu.device.is_cpu() && cpu.fallback.is_none());
    let gpus = [
        (
            DeviceChoice::Cuda,
            "CUDA",
            candle_core::utils::cuda_is_available(),
        ),
        (
            DeviceChoice::Metal,
            "Metal",
            candle_core::utils::metal_is_available(),
        ),
    ];
    for (choice, name, available) in gpus {
        match select_device(choice, None) {
            Ok(chosen) => {
                assert!(available, "{name} chosen but not available");
                assert_eq!(device_name(&chosen.device), choice.name());
                assert!(chosen.fallback.is_none());
            }
            Err(MinusError::DeviceUnavailable(message)) => {
                // Never a silent fall back to the CPU: the error says which device and why.
                let why = if available {
                    "failed a first test"
                } else {
                    "could not be opened"
                };
                assert!(message.starts_with(&format!("{name} {why}")), "{message}");
            }
            Err(other) => panic!("{name}: {other}"),
        }
    }
    Ok(())
}

#[test]
fn the_real_first_test_passes_on_this_cpu() -> Result<()> {
    // The real test on the CPU, as a GPU would run it, against its loop-computed reference.
    smoke_test(&Device::Cpu, DType::F32)?;
    smoke_test(&Device::Cpu, DType::F16)?;
    let bf16 = resolve_dtype(&Device::Cpu, Some(DTypeChoice::Bf16));
    assert!(
        matches!(&bf16, Err(MinusError::UnsupportedDtype(message)) if message.contains("CPU")),
        "{bf16:?}"
    );
    Ok(())
}

#[test]
fn bf16_runs_only_where_the_device_has_it() {
    let gpu = |bf16| Capabilities { is_gpu: true, bf16 };
    let cpu = Capabilities {
        is_gpu: false,
        bf16: false,
    };
    let bf16 = Some(DTypeChoice::Bf16);
    assert!(matches!(
        resolve_dtype_for(gpu(true), bf16),
        Ok(DType::BF16)
    ));
    let refused = resolve_dtype_for(gpu(false), bf16).map_err(|e| e.to_string());
    let message = refused.err().unwrap_or_default();
    assert!(message.contains("compute capability 8.0"), "{message}");
    assert!(message.contains("use f16"), "{message}");
    let on_cpu = resolve_dtype_for(cpu, bf16).map_err(|e| e.to_string());
    assert!(on_cpu.err().unwrap_or_default().contains("CPU"));
    assert!(matches!(
        resolve_dtype_for(gpu(false), None),
        Ok(DType::F16)
    ));
    assert!(matches!(resolve_dtype_for(cpu, None), Ok(DType::F32)));
    assert!(matches!(
        resolve_dtype_for(cpu, Some(DTypeChoice::F16)),
        Ok(DType::F16)
    ));
    // The real probe never claims bf16 for the CPU.
    assert_eq!(Capabilities::of(&Device::Cpu), cpu);
}
