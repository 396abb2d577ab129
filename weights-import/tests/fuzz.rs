//! A stable-Rust mutation fuzzer for the readers of untrusted files: the pickle parser, the
//! `.pth` reader, the safetensors file and index readers (through a whole checkpoint
//! directory), the record (burnpack) reader and the SentencePiece protobuf reader.
//!
//! Each target mutates the seed corpus (`tests/data/micro`, `tests/data/unusual`,
//! `tests/data/bad/hostile-*`, `tests/data/tokenizer/small.model`) with bit flips,
//! interesting integers, chunk deletion/duplication/insertion and splices, runs the reader
//! under `catch_unwind`, and fails on any panic (the input is saved under
//! `$CARGO_TARGET_DIR/fuzz-failures/`). After all targets it checks the peak resident set
//! size stayed under 4 GiB, so no input made a reader allocate what the file did not hold.
//!
//! By default each target runs for `FUZZ_SECONDS` (default 2) seconds, which is what CI
//! runs. A long run, as recorded in the README:
//!
//! ```text
//! FUZZ_SECONDS=300 FUZZ_SEED=1 cargo test --release -p llama2-import --test fuzz -- --nocapture --test-threads 1
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn data() -> PathBuf {
    repo().join("tests").join("data")
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    1 << 40,
    u64::MAX,
];

fn mutate(rng: &mut Rng, input: &[u8], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    let rounds = 1 + rng.below(4);
    for _ in 0..rounds {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())] as u8;
            }
            2 if len >= 8 => {
                let i = rng.below(len - 7);
                let width = [1usize, 2, 4, 8][rng.below(4)];
                let value = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                out[i..i + width].copy_from_slice(&value[..width]);
            }
            3 if len > 1 => {
                let start = rng.below(len);
                let n = 1 + rng.below((len - start).min(64));
                out.drain(start..start + n);
            }
            4 if len > 1 => {
                let start = rng.below(len);
                let n = 1 + rng.below((len - start).min(64));
                let chunk = out[start..start + n].to_vec();
                let at = rng.below(len);
                out.splice(at..at, chunk);
            }
            5 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                out.splice(at..at, bytes);
            }
            6 if !seeds.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() && len > 0 {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(256));
                    let at = rng.below(len);
                    let end = (at + n).min(len);
                    out.splice(at..end, other[from..from + n].iter().copied());
                }
            }
            _ if len > 0 => out.truncate(rng.below(len)),
            _ => {}
        }
    }
    out
}

fn seconds() -> Duration {
    let s: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

fn seed() -> u64 {
    std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
        | 1
}

fn failures_dir() -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .unwrap_or_else(|_| repo().join("target").display().to_string());
    PathBuf::from(target).join("fuzz-failures")
}

/// Runs `target` on mutations of `seeds` for the configured time; panics name the saved
/// input. Returns (runs, accepted).
fn fuzz(
    name: &str,
    seeds: &[Vec<u8>],
    mut target: impl FnMut(usize, &[u8]) -> bool,
) -> (usize, usize) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(seed()
        ^ name
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ b as u64));
    let deadline = Instant::now() + seconds();
    let (mut runs, mut accepted) = (0, 0);
    // Every seed unmutated first.
    let mut pending: Vec<(usize, Vec<u8>)> = seeds.iter().cloned().enumerate().collect();
    while Instant::now() < deadline || !pending.is_empty() {
        let (which, input) = pending.pop().unwrap_or_else(|| {
            let which = rng.below(seeds.len());
            (which, mutate(&mut rng, &seeds[which], seeds))
        });
        let result = catch_unwind(AssertUnwindSafe(|| target(which, &input)));
        match result {
            Ok(ok) => accepted += ok as usize,
            Err(_) => {
                let dir = failures_dir();
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join(format!("{name}-{runs}.bin"));
                std::fs::write(&path, &input).unwrap();
                panic!("{name}: the reader panicked on {}", path.display());
            }
        }
        runs += 1;
    }
    eprintln!(
        "{name}: {runs} inputs in {:?}, {accepted} accepted",
        seconds()
    );
    (runs, accepted)
}

fn read(path: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(path.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

/// Every `.pth` of the corpus.
fn pth_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for root in ["micro", "unusual", "bad"] {
        let Ok(dirs) = std::fs::read_dir(data().join(root)) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = dirs.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for dir in dirs {
            let Ok(files) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = files.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let small = f.metadata().is_ok_and(|m| m.len() < 256 * 1024);
                if f.extension().is_some_and(|x| x == "pth") && small {
                    seeds.push(read(&f));
                }
            }
        }
    }
    seeds
}

/// The `data.pkl` of every seed `.pth` that has a readable one.
fn pickle_seeds() -> Vec<Vec<u8>> {
    use std::io::Read;
    let mut seeds = Vec::new();
    for pth in pth_seeds() {
        let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(pth)) else {
            continue;
        };
        for i in 0..archive.len() {
            let Ok(mut entry) = archive.by_index(i) else {
                continue;
            };
            if entry.name().ends_with("/data.pkl") {
                let mut bytes = Vec::new();
                if entry.read_to_end(&mut bytes).is_ok() {
                    seeds.push(bytes);
                }
            }
        }
    }
    seeds
}

#[test]
fn fuzz_pickle_parser() {
    let seeds = pickle_seeds();
    assert!(seeds.len() >= 5, "{} pickle seeds", seeds.len());
    let (_, accepted) = fuzz("pickle", &seeds, |_, bytes| {
        llama2_import::fuzzing::pickle(bytes)
    });
    assert!(accepted > 0);
}

#[test]
fn fuzz_pth_reader() {
    let seeds = pth_seeds();
    assert!(seeds.len() >= 10, "{} .pth seeds", seeds.len());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consolidated.00.pth");
    fuzz("pth", &seeds, |_, bytes| {
        std::fs::write(&path, bytes).unwrap();
        llama2_import::fuzzing::pth_file(&path).is_ok()
    });
}

/// The entries of every readable seed `.pth`, for repacking with a mutated `data.pkl`.
fn archives() -> Vec<Vec<(String, Vec<u8>)>> {
    use std::io::Read;
    let mut out = Vec::new();
    for pth in pth_seeds() {
        let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(pth)) else {
            continue;
        };
        let mut entries = Vec::new();
        for i in 0..archive.len() {
            let Ok(mut entry) = archive.by_index(i) else {
                break;
            };
            let mut bytes = Vec::new();
            if entry.read_to_end(&mut bytes).is_err() {
                break;
            }
            entries.push((entry.name().to_string(), bytes));
        }
        if entries.iter().any(|(n, _)| n.ends_with("/data.pkl")) {
            out.push(entries);
        }
    }
    out
}

#[test]
fn fuzz_pth_reader_with_valid_zips() {
    // The zip stays well-formed (CRCs right) and only data.pkl is mutated, so the mutations
    // reach the tensor checks: offsets, sizes, strides, storage keys and dtypes.
    use std::io::Write;
    let archives = archives();
    assert!(archives.len() >= 5, "{} archives", archives.len());
    let seeds: Vec<Vec<u8>> = archives
        .iter()
        .map(|a| {
            a.iter()
                .find(|(n, _)| n.ends_with("/data.pkl"))
                .unwrap()
                .1
                .clone()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consolidated.00.pth");
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    fuzz("pth-repacked", &seeds, |which, pickle| {
        let file = std::fs::File::create(&path).unwrap();
        let mut writer = zip::ZipWriter::new(file);
        for (name, bytes) in &archives[which] {
            writer.start_file(name.as_str(), options).unwrap();
            let data = if name.ends_with("/data.pkl") {
                pickle
            } else {
                bytes.as_slice()
            };
            writer.write_all(data).unwrap();
        }
        writer.finish().unwrap();
        llama2_import::fuzzing::pth_file(&path).is_ok()
    });
}

#[test]
fn fuzz_safetensors_and_index_readers() {
    // One target mutates a shard, the index or the config of the sharded micro model, or
    // the single file of micro/hf; the reader is the whole Hugging Face import.
    let sharded = data().join("micro/hf-sharded");
    let single = data().join("micro/hf");
    let mut files: Vec<(PathBuf, &str)> = vec![
        (single.clone(), "model.safetensors"),
        (single.clone(), "config.json"),
    ];
    for f in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "config.json",
    ] {
        files.push((sharded.clone(), f));
    }
    let seeds: Vec<Vec<u8>> = files.iter().map(|(d, f)| read(d.join(f))).collect();
    let work = tempfile::tempdir().unwrap();
    let mut turn = 0usize;
    // Each input is one file of a directory, mutated; the rest are the originals.
    fuzz("safetensors", &seeds, |which, bytes| {
        turn += 1;
        let (source, name) = &files[which];
        let dir = work.path().join(format!("case{}", turn % 2));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        for entry in std::fs::read_dir(source).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
        std::fs::write(dir.join(name), bytes).unwrap();
        llama2_import::fuzzing::checkpoint_dir(&dir).is_ok()
    });
}

#[test]
fn fuzz_record_reader() {
    // llama2-burn records (burnpack): written here from micro/meta-1 in two precisions.
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = llama2_import::Checkpoint::open(data().join("micro/meta-1")).unwrap();
    let mut seeds = Vec::new();
    for dtype in [
        llama2_import::StorageDtype::F32,
        llama2_import::StorageDtype::BF16,
    ] {
        let path = dir.path().join(format!("{dtype}.bpk"));
        checkpoint.save_record(&path, dtype).unwrap();
        seeds.push(read(&path));
    }
    let path = dir.path().join("case.bpk");
    fuzz("record", &seeds, |_, bytes| {
        std::fs::write(&path, bytes).unwrap();
        llama2_import::fuzzing::checkpoint_dir(&path).is_ok()
    });
}

#[test]
fn fuzz_sentencepiece_reader() {
    let seeds = vec![
        read(data().join("tokenizer/small.model")),
        read(data().join("tokenizer/variant.model")),
    ];
    let (_, accepted) = fuzz("sentencepiece", &seeds, |_, bytes| {
        llama2::tokenizer::Tokenizer::from_sentencepiece_bytes(bytes).is_ok()
    });
    assert!(accepted > 0);
}

/// Peak resident memory of this process in bytes (Linux), checked by the last test to run
/// in a single-threaded run and by each test otherwise.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn zz_peak_memory_stays_bounded() {
    // Runs after the fuzz targets with --test-threads 1 (tests run in name order).
    if let Some(peak) = peak_rss() {
        eprintln!("peak RSS {:.1} MiB", peak as f64 / (1 << 20) as f64);
        assert!(peak < 4 << 30, "peak RSS {peak} bytes");
    }
}
