//! Shared by the benchmarks: memory and load readings, medians, random tokens, tables.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::Backend;
use burn::tensor::Tensor;
use llama2_burn::model::LlamaConfig;

/// A `kB` field of `/proc/self/status` such as `VmRSS:` or `VmHWM:` (the current resident
/// size where `/proc` is unavailable; 0 where neither is).
pub fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .or_else(|| memory_stats::memory_stats().map(|m| m.physical_mem as u64 / 1024))
        .unwrap_or(0)
}

/// The 1, 5 and 15-minute load averages (empty where unavailable).
pub fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The median of `times` (the mean of the two middle ones for an even count).
pub fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    let n = times.len();
    if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2
    }
}

/// `len` uniform tokens in `3 .. vocab` (past BOS/EOS), from a xorshift generator.
pub fn random_tokens(state: &mut u64, len: usize, vocab: usize) -> Vec<u32> {
    (0..len)
        .map(|_| {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            3 + (*state % (vocab as u64 - 3)) as u32
        })
        .collect()
}

/// Forces the lazy initialisation of every parameter, so that none happens while timing.
pub fn materialise<B: Backend, M: Module<B>>(model: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            std::hint::black_box(param.val());
        }
    }
    model.visit(&mut Touch);
}

/// Prints a right-aligned table.
pub fn print_table(head: &[String], rows: &[Vec<String>]) {
    let widths: Vec<usize> = head
        .iter()
        .enumerate()
        .map(|(i, h)| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
                .max(h.chars().count())
        })
        .collect();
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    println!("{}", line(head));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    );
    for row in rows {
        println!("{}", line(row));
    }
}

/// Runs this program again once per comma-separated shape, with `--worker <shape>` after the
/// current arguments and `env` set, so that each shape's peak memory is its own; returns the
/// JSON line each worker prints last.
pub fn run_workers(shapes: &str, env: &[(&str, String)]) -> Result<Vec<Value>> {
    let exe = std::env::current_exe()?;
    let mut results = Vec::new();
    for shape in shapes.split(',').map(str::trim) {
        if LlamaConfig::preset(shape).is_none() {
            bail!("unknown shape {shape:?}");
        }
        let output = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .arg("--worker")
            .arg(shape)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .context("starting the measurement process")?;
        if !output.status.success() {
            eprint!("{}", String::from_utf8_lossy(&output.stderr));
            bail!("measuring {shape} failed");
        }
        let stdout = String::from_utf8(output.stdout)?;
        let last = stdout.lines().last().context("no output from the worker")?;
        results.push(serde_json::from_str::<Value>(last)?);
    }
    Ok(results)
}
