//! Every malformed checkpoint of `tests/data/bad` (see `cases.json`) is refused with an
//! error naming the file or tensor at fault, without a panic and without writing output.

mod common;

use std::path::Path;

use common::*;
use llama2_import::{Checkpoint, ImportError, StorageDtype};
use serde_json::Value;

#[test]
fn every_bad_checkpoint_gives_a_named_error() {
    let cases: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(data_dir().join("bad/cases.json")).unwrap())
            .unwrap();
    assert!(cases.len() >= 15, "the corpus has {} cases", cases.len());
    let out_dir = tempfile::tempdir().unwrap();
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let expect = case["expect"].as_str().unwrap();
        let dir = data_dir().join("bad").join(name);
        // Opening validates names, shapes and dtypes; converting reads every tensor.
        let result = std::panic::catch_unwind(|| {
            let out = out_dir.path().join(format!("{name}.bpk"));
            let result =
                Checkpoint::open(&dir).and_then(|c| c.save_record(&out, StorageDtype::F32));
            (result, out.exists())
        });
        let (result, written) = result.unwrap_or_else(|_| panic!("{name}: panicked"));
        let error = match result {
            Ok(()) => panic!("{name}: accepted"),
            Err(e) => e.to_string(),
        };
        assert!(
            error.contains(expect),
            "{name}: error `{error}` does not mention `{expect}`"
        );
        assert!(!written, "{name}: output written despite the error");
    }
    // Nothing half-written is left behind either.
    assert_eq!(std::fs::read_dir(out_dir.path()).unwrap().count(), 0);
}

#[test]
fn the_unmodified_sources_of_the_corpus_load() {
    for layout in ["meta-1", "meta-2", "meta-4-mha", "hf", "hf-sharded"] {
        let dir = data_dir().join("micro").join(layout);
        let model = Checkpoint::open(&dir).and_then(|c| c.into_model::<B>(&device()));
        assert!(model.is_ok(), "{layout}: {:?}", model.err());
    }
}

#[test]
fn missing_paths_and_unknown_layouts_are_named() {
    let missing = data_dir().join("no-such-model");
    let error = Checkpoint::open(&missing).unwrap_err().to_string();
    assert!(error.contains("no-such-model"), "{error}");

    let empty = tempfile::tempdir().unwrap();
    let error = Checkpoint::open(empty.path()).unwrap_err().to_string();
    assert!(error.contains("not a Burn record"), "{error}");

    let not_a_record = empty.path().join("model.bpk");
    std::fs::write(&not_a_record, b"definitely not a burnpack").unwrap();
    let error = Checkpoint::open(&not_a_record).unwrap_err().to_string();
    assert!(error.contains("model.bpk"), "{error}");
}

/// The name of an error's variant, matched exhaustively so a new variant must be named here.
fn variant(error: &ImportError) -> &'static str {
    match error {
        ImportError::Io { .. } => "Io",
        ImportError::MissingFile { .. } => "MissingFile",
        ImportError::UnknownLayout { .. } => "UnknownLayout",
        ImportError::Config { .. } => "Config",
        ImportError::Unsupported { .. } => "Unsupported",
        ImportError::Shards { .. } => "Shards",
        ImportError::Pytorch { .. } => "Pytorch",
        ImportError::Safetensors { .. } => "Safetensors",
        ImportError::Record { .. } => "Record",
        ImportError::MissingTensor { .. } => "MissingTensor",
        ImportError::UnknownTensor { .. } => "UnknownTensor",
        ImportError::ShapeMismatch { .. } => "ShapeMismatch",
        ImportError::UnsupportedDtype { .. } => "UnsupportedDtype",
        ImportError::MissingRecord { .. } => "MissingRecord",
        ImportError::Storage { .. } => "Storage",
        ImportError::Checksum { .. } => "Checksum",
        ImportError::DuplicateTensor { .. } => "DuplicateTensor",
        ImportError::Index { .. } => "Index",
        ImportError::PathEscape { .. } => "PathEscape",
        ImportError::Limit { .. } => "Limit",
        ImportError::NonFinite { .. } => "NonFinite",
        ImportError::OutputIsInput { .. } => "OutputIsInput",
        ImportError::Lora(_) => "Lora",
        ImportError::TensorData { .. } => "TensorData",
        ImportError::Tokenizer { .. } => "Tokenizer",
        ImportError::Hub(_) => "Hub",
    }
}

/// Converts `dir` into a record inside a fresh directory; returns the result and whatever
/// the output directory holds afterwards.
fn convert(dir: &Path) -> (Result<(), ImportError>, Vec<String>) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("model.bpk");
    let result = std::panic::catch_unwind(|| {
        Checkpoint::open(dir).and_then(|c| c.save_record(&out, StorageDtype::F32))
    })
    .unwrap_or_else(|_| panic!("{}: panicked", dir.display()));
    let left = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (result, left)
}

#[test]
fn every_hostile_checkpoint_gives_its_error_variant() {
    // Written by scripts/gen_hostile_cases.py; `variant` is the ImportError variant.
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(data_dir().join("bad/hostile.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 25, "the corpus has {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let expect = case["variant"].as_str().unwrap();
        let dir = data_dir().join("bad").join(name);
        let (result, left) = convert(&dir);
        match result {
            Ok(()) => failures.push(format!("{name}: accepted")),
            Err(e) if variant(&e) != expect => {
                failures.push(format!("{name}: {} ({e}), expected {expect}", variant(&e)))
            }
            Err(e) => {
                let message = e.to_string();
                // The error names a file of the case (or the case directory).
                if !message.contains(name) {
                    failures.push(format!("{name}: `{message}` names no file of the case"));
                }
            }
        }
        if !left.is_empty() {
            failures.push(format!("{name}: left {left:?} in the output directory"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unusual_but_valid_pth_files_load_to_the_values_torch_gives() {
    // Transposed views, column slices, one shared storage at offsets, protocols 4 and 5,
    // nn.Parameter values: scripts/gen_hostile_cases.py checks with torch.load that each
    // holds exactly micro/meta-1's tensors.
    let cases: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(data_dir().join("unusual/cases.json")).unwrap(),
    )
    .unwrap();
    assert!(cases.len() >= 6);
    let reference = Checkpoint::open(data_dir().join("micro/meta-1")).unwrap();
    for case in &cases {
        let name = case["case"].as_str().unwrap();
        let checkpoint = Checkpoint::open(data_dir().join("unusual").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for spec in reference.params() {
            let want = reference.load_param(&spec.name).unwrap();
            let got = checkpoint
                .load_param(&spec.name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(got, want, "{name}: {}", spec.name);
        }
    }
}

#[test]
fn the_finite_check_names_the_tensor_and_can_be_turned_off() {
    let dir = data_dir().join("bad/hostile-meta-nan-weight");
    let error = Checkpoint::open(&dir)
        .unwrap()
        .load_param("layers.1.feed_forward.w1.weight")
        .unwrap_err();
    match error {
        ImportError::NonFinite { tensor, .. } => {
            assert_eq!(tensor, "layers.1.feed_forward.w1.weight")
        }
        other => panic!("{other}"),
    }
    let values = Checkpoint::open(&dir)
        .unwrap()
        .with_check_finite(false)
        .load_param("layers.1.feed_forward.w1.weight")
        .unwrap();
    assert_eq!(values.iter().filter(|v| v.is_nan()).count(), 1);
}

#[test]
fn an_output_that_is_an_input_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("model.bpk");
    Checkpoint::open(data_dir().join("micro/meta-1"))
        .unwrap()
        .save_record(&record, StorageDtype::F32)
        .unwrap();
    let before = std::fs::read(&record).unwrap();
    let error = Checkpoint::open(&record)
        .unwrap()
        .save_record(&record, StorageDtype::BF16)
        .unwrap_err();
    assert_eq!(variant(&error), "OutputIsInput", "{error}");
    assert_eq!(std::fs::read(&record).unwrap(), before);

    // A file of a checkpoint directory, through another spelling of its path.
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data_dir().join("micro/meta-1")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let input = copy.path().join(".").join("consolidated.00.pth");
    let error = Checkpoint::open(copy.path())
        .unwrap()
        .save_record(&input, StorageDtype::F32)
        .unwrap_err();
    assert_eq!(variant(&error), "OutputIsInput", "{error}");
}

#[test]
fn temporaries_left_by_a_killed_run_are_removed_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    // What a SIGKILLed import leaves: a temporary named after a process that is gone
    // (ids above Linux's pid_max never run) and an old-style one without an id.
    let stale_file = dir.path().join(".llama2-burn-4194305-Ab12Cd.tmp");
    let stale_dir = dir.path().join(".llama2-burn-4194306-Ef34Gh.tmp");
    std::fs::write(&stale_file, b"half a record").unwrap();
    std::fs::create_dir(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("model.safetensors"), b"half an export").unwrap();
    let checkpoint = Checkpoint::open(data_dir().join("micro/meta-1")).unwrap();
    checkpoint
        .save_record(dir.path().join("model.bpk"), StorageDtype::F32)
        .unwrap();
    if cfg!(target_os = "linux") {
        assert!(!stale_file.exists() && !stale_dir.exists());
    }
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().ends_with(".tmp")),
        "{names:?}"
    );
}

#[cfg(unix)]
#[test]
fn a_file_name_that_is_not_utf8_is_not_taken_for_a_shard() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(data_dir().join("micro/meta-1")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    // `consolidated.0\xff.pth` would read as `consolidated.0�.pth` if converted lossily.
    let odd = std::ffi::OsStr::from_bytes(b"consolidated.0\xff.pth");
    std::fs::write(dir.path().join(odd), b"not a shard").unwrap();
    let checkpoint = Checkpoint::open(dir.path()).unwrap();
    assert_eq!(
        checkpoint.format,
        llama2_import::SourceFormat::Meta { shards: 1 }
    );
}

#[test]
fn truncated_and_empty_records_give_a_record_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let whole = dir.path().join("whole.bpk");
    Checkpoint::open(data_dir().join("micro/meta-1"))
        .unwrap()
        .save_record(&whole, StorageDtype::F32)
        .unwrap();
    let bytes = std::fs::read(&whole).unwrap();
    for (name, len) in [
        ("empty.bpk", 0),
        ("header.bpk", 6),
        ("half.bpk", bytes.len() / 2),
        ("last-byte-missing.bpk", bytes.len() - 1),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let (result, _) = convert(&path);
        let error = result.expect_err(name);
        assert_eq!(variant(&error), "Record", "{name}: {error}");
        assert!(error.to_string().contains(name), "{name}: {error}");
    }
}
