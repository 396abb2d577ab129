//! Every malformed checkpoint of `tests/data/bad` (see `cases.json`) is refused with an
//! error naming the file or tensor at fault, without a panic and without writing output.

mod common;

use common::*;
use llama2_import::{Checkpoint, StorageDtype};
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
