//! Records (f32 / f16 / bf16) and Hugging Face export round-trip the weights.

mod common;

use common::*;
use half::{bf16, f16};
use llama2_import::{Checkpoint, SourceFormat, StorageDtype};
use safetensors::SafeTensors;

fn assert_same_params(a: &Checkpoint, b: &Checkpoint, convert: impl Fn(f32) -> f32, what: &str) {
    assert_eq!(a.config.dim, b.config.dim);
    for spec in a.params() {
        let x = a.load_param(&spec.name).unwrap();
        let y = b.load_param(&spec.name).unwrap();
        assert!(
            x.iter()
                .zip(&y)
                .all(|(p, q)| convert(*p).to_bits() == q.to_bits()),
            "{what}: `{}` differs",
            spec.name
        );
    }
}

#[test]
fn records_round_trip_in_every_precision() {
    let source = Checkpoint::open(tiny("meta-2")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    type Rounding = fn(f32) -> f32;
    let cases: [(StorageDtype, Rounding); 3] = [
        (StorageDtype::F32, |v| v),
        (StorageDtype::BF16, |v| bf16::from_f32(v).to_f32()),
        (StorageDtype::F16, |v| f16::from_f32(v).to_f32()),
    ];
    for (dtype, convert) in cases {
        let path = dir.path().join(format!("tiny-{dtype}.bpk"));
        source.save_record(&path, dtype).unwrap();
        let record = Checkpoint::open(&path).unwrap();
        assert_eq!(record.format, SourceFormat::Record);
        assert_eq!(record.config, source.config);
        assert_same_params(&source, &record, convert, &dtype.to_string());
    }
    // Meta's weights are bf16, so a bf16 record is lossless and half the size.
    let f32_size = std::fs::metadata(dir.path().join("tiny-f32.bpk"))
        .unwrap()
        .len();
    let bf16_size = std::fs::metadata(dir.path().join("tiny-bf16.bpk"))
        .unwrap()
        .len();
    assert!(
        bf16_size * 2 <= f32_size + 8192,
        "{bf16_size} vs {f32_size}"
    );
}

#[test]
fn a_loaded_record_computes_the_reference_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.bpk");
    Checkpoint::open(tiny("hf-sharded"))
        .unwrap()
        .save_record(&path, StorageDtype::BF16)
        .unwrap();
    let model = llama2_import::load_model::<B>(&path, &device()).unwrap();
    let ids = reference("prompt_2.ids").i64;
    let expected = reference("prompt_2.logits").f32;
    let got: Vec<f32> = model
        .forward(tokens(&ids, 1))
        .into_data()
        .convert::<f32>()
        .to_vec()
        .unwrap();
    assert!(max_abs_diff(&got, &expected) <= tolerance());
}

#[test]
fn exported_safetensors_equal_the_transformers_checkpoint() {
    // Export a model loaded from Meta's layout; transformers wrote tiny/hf from the same
    // weights, so every tensor must be bit-identical (q/k re-permuted, linears transposed back).
    let model = llama2_import::load_model::<B>(tiny("meta-1"), &device()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exported");
    llama2_import::export_hf(&model, &out, StorageDtype::F32).unwrap();

    let ours = std::fs::read(out.join("model.safetensors")).unwrap();
    let ours = SafeTensors::deserialize(&ours).unwrap();
    let theirs = std::fs::read(tiny("hf").join("model.safetensors")).unwrap();
    let theirs = SafeTensors::deserialize(&theirs).unwrap();
    let mut names = theirs.names();
    names.sort();
    let mut our_names = ours.names();
    our_names.sort();
    assert_eq!(our_names, names);
    for name in names {
        let (a, b) = (ours.tensor(name).unwrap(), theirs.tensor(name).unwrap());
        assert_eq!(a.shape(), b.shape(), "{name}");
        assert_eq!(a.dtype(), b.dtype(), "{name}");
        assert!(a.data() == b.data(), "{name}: values differ");
    }

    // The exported directory is itself a loadable checkpoint.
    let back = Checkpoint::open(&out).unwrap();
    assert_eq!(back.format, SourceFormat::HuggingFace);
    assert_same_params(
        &Checkpoint::open(tiny("meta-1")).unwrap(),
        &back,
        |v| v,
        "re-import",
    );
}

#[test]
fn export_refuses_a_non_empty_directory_and_leaves_it_alone() {
    let model = llama2_import::load_model::<B>(tiny("meta-1"), &device()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
    let error = llama2_import::export_hf(&model, dir.path(), StorageDtype::BF16).unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

/// A record imported from a folder with a `tokenizer.model` carries it, and
/// a record written from a record keeps it: the stored tokenizer gives the
/// ids of the file it came from.
#[test]
fn records_carry_their_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta");
    std::fs::create_dir(&meta).unwrap();
    for f in ["params.json", "consolidated.00.pth"] {
        std::fs::copy(data_dir().join("tiny-chat").join(f), meta.join(f)).unwrap();
    }
    let tokenizer = data_dir().join("llama2-tokenizer/tokenizer.model");
    std::fs::copy(&tokenizer, meta.join("tokenizer.model")).unwrap();

    let first = dir.path().join("first.bpk");
    Checkpoint::open(&meta)
        .unwrap()
        .save_record(&first, StorageDtype::BF16)
        .unwrap();
    let second = dir.path().join("second.bpk");
    Checkpoint::open(&first)
        .unwrap()
        .save_record(&second, StorageDtype::F32)
        .unwrap();
    let reference = llama2_burn::model::Tokenizer::from_file(&tokenizer).unwrap();
    let text = "Hello, world! [INST] Wie geht's? 你好";
    for record in [&first, &second] {
        let stored = llama2_burn::import::model_tokenizer(record)
            .unwrap()
            .expect("the record holds the tokenizer");
        assert_eq!(
            stored.encode(text, true, false).unwrap(),
            reference.encode(text, true, false).unwrap()
        );
    }
    // The folder itself resolves to its tokenizer too; a record without one to none.
    assert!(
        llama2_burn::import::model_tokenizer(&meta)
            .unwrap()
            .is_some()
    );
    let bare = dir.path().join("bare.bpk");
    let model: llama2_burn::model::Llama<B> =
        llama2_burn::import::load_model(&first, &device()).unwrap();
    llama2_burn::import::save_model(&model, &bare, StorageDtype::F32).unwrap();
    assert!(
        llama2_burn::import::model_tokenizer(&bare)
            .unwrap()
            .is_none()
    );
}
