//! The engine takes a preview only when the window has shown the last one.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use minus::engine::{Command, Engine, Event, LoadSettings};
use minus::pipeline::Request;

/// Runs one job and returns, per step, whether it came with a preview.
fn steps_with_previews(engine: &mut Engine, steps: usize) -> Vec<bool> {
    let job = engine.next_job_id();
    engine.send(Command::Generate {
        job,
        request: Request {
            steps,
            width: 64,
            height: 64,
            ..Request::default()
        },
        output_dir: None,
    });
    let started = Instant::now();
    let mut previews = Vec::new();
    loop {
        for event in engine.drain_events() {
            match event {
                Event::Step { preview, .. } => previews.push(preview.is_some()),
                Event::Finished { .. } => return previews,
                Event::Failed { error, .. } | Event::ModelsFailed { error } => {
                    panic!("{error}")
                }
                _ => {}
            }
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no result");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn without_the_window_showing_it_each_job_takes_one_preview() {
    let mut engine = Engine::spawn(Arc::new(|| {})).expect("engine");
    engine.send(Command::LoadModels(LoadSettings {
        paths: common::model_paths(None),
        device: minus::device::DeviceChoice::Cpu,
        dtype: None,
    }));
    for _ in 0..2 {
        let previews = steps_with_previews(&mut engine, 4);
        assert_eq!(previews, [true, false, false, false]);
    }
}
