//! Protobuf messages of a SentencePiece `tokenizer.model` file.
//!
//! A subset of `sentencepiece_model.proto` (proto2): only the fields the
//! tokenizer reads are declared, every other field is skipped when decoding.
//! Field numbers and defaults follow the upstream schema, so an absent field
//! reads as its proto2 default through the generated accessor methods
//! (e.g. [`TrainerSpec::byte_fallback`]).

/// Top-level message of a `.model` file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelProto {
    /// Vocabulary; the position of a piece is its id.
    #[prost(message, repeated, tag = "1")]
    pub pieces: Vec<SentencePiece>,
    /// Settings the model was trained with (model type, special ids, ...).
    #[prost(message, optional, tag = "2")]
    pub trainer_spec: Option<TrainerSpec>,
    /// Text normalization applied before encoding.
    #[prost(message, optional, tag = "3")]
    pub normalizer_spec: Option<NormalizerSpec>,
    /// Normalization applied to decoded text (usually absent).
    #[prost(message, optional, tag = "5")]
    pub denormalizer_spec: Option<NormalizerSpec>,
}

/// One vocabulary entry.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SentencePiece {
    /// Surface string, with `▁` (U+2581) standing for a space.
    #[prost(string, optional, tag = "1")]
    pub piece: Option<String>,
    /// Merge priority for BPE models (higher merges first).
    #[prost(float, optional, tag = "2")]
    pub score: Option<f32>,
    /// Kind of piece, see [`PieceType`].
    #[prost(enumeration = "PieceType", optional, tag = "3", default = "Normal")]
    pub r#type: Option<i32>,
}

/// `ModelProto.SentencePiece.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PieceType {
    /// Ordinary piece produced by training.
    Normal = 1,
    /// The `<unk>` piece.
    Unknown = 2,
    /// Control symbol such as `<s>` / `</s>`; never produced from text.
    Control = 3,
    /// Piece that is always kept as one token.
    UserDefined = 4,
    /// Piece present in the vocabulary but not used for encoding.
    Unused = 5,
    /// Byte-fallback piece `<0xXX>`.
    Byte = 6,
}

/// `TrainerSpec.ModelType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ModelType {
    /// Unigram language model.
    Unigram = 1,
    /// Byte-pair encoding.
    Bpe = 2,
    /// Whitespace-delimited words.
    Word = 3,
    /// Single characters.
    Char = 4,
}

/// Subset of `TrainerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TrainerSpec {
    /// Segmentation algorithm.
    #[prost(enumeration = "ModelType", optional, tag = "3", default = "Unigram")]
    pub model_type: Option<i32>,
    /// Requested vocabulary size.
    #[prost(int32, optional, tag = "4", default = "8000")]
    pub vocab_size: Option<i32>,
    /// Whether pieces ending/starting with whitespace are suffix-style.
    #[prost(bool, optional, tag = "24", default = "false")]
    pub treat_whitespace_as_suffix: Option<bool>,
    /// Whether digits were split into single-digit pieces during training.
    #[prost(bool, optional, tag = "25", default = "false")]
    pub split_digits: Option<bool>,
    /// Whether whitespace-only pieces (`▁▁`, ...) were allowed.
    #[prost(bool, optional, tag = "26", default = "false")]
    pub allow_whitespace_only_pieces: Option<bool>,
    /// Whether unknown characters are encoded as UTF-8 byte pieces.
    #[prost(bool, optional, tag = "35", default = "false")]
    pub byte_fallback: Option<bool>,
    /// Id assigned to `<unk>` at training time.
    #[prost(int32, optional, tag = "40", default = "0")]
    pub unk_id: Option<i32>,
    /// Id assigned to `<s>` at training time (-1: none).
    #[prost(int32, optional, tag = "41", default = "1")]
    pub bos_id: Option<i32>,
    /// Id assigned to `</s>` at training time (-1: none).
    #[prost(int32, optional, tag = "42", default = "2")]
    pub eos_id: Option<i32>,
    /// Id assigned to `<pad>` at training time (-1: none).
    #[prost(int32, optional, tag = "43", default = "-1")]
    pub pad_id: Option<i32>,
    /// Text that `<unk>` decodes to.
    #[prost(string, optional, tag = "44", default = " ⁇ ")]
    pub unk_surface: Option<String>,
    /// Surface string of the unknown piece.
    #[prost(string, optional, tag = "45", default = "<unk>")]
    pub unk_piece: Option<String>,
    /// Surface string of the beginning-of-sentence piece.
    #[prost(string, optional, tag = "46", default = "<s>")]
    pub bos_piece: Option<String>,
    /// Surface string of the end-of-sentence piece.
    #[prost(string, optional, tag = "47", default = "</s>")]
    pub eos_piece: Option<String>,
    /// Surface string of the padding piece.
    #[prost(string, optional, tag = "48", default = "<pad>")]
    pub pad_piece: Option<String>,
}

/// Subset of `NormalizerSpec`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizerSpec {
    /// Rule name (`identity`, `nmt_nfkc`, ...).
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Compiled normalization rules; empty for `identity`.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub precompiled_charsmap: Option<Vec<u8>>,
    /// Whether a `▁` is prepended to non-empty input.
    #[prost(bool, optional, tag = "3", default = "true")]
    pub add_dummy_prefix: Option<bool>,
    /// Whether leading, trailing and repeated spaces are removed.
    #[prost(bool, optional, tag = "4", default = "true")]
    pub remove_extra_whitespaces: Option<bool>,
    /// Whether spaces are replaced by `▁`.
    #[prost(bool, optional, tag = "5", default = "true")]
    pub escape_whitespaces: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::testdata::{llama2_model_path, small_model_path};
    use prost::Message;

    #[test]
    fn decodes_llama2_model() {
        let bytes = std::fs::read(llama2_model_path()).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        assert_eq!(model.pieces.len(), 32000);
        let trainer = model.trainer_spec.unwrap();
        assert_eq!(trainer.model_type(), ModelType::Bpe);
        assert!(trainer.byte_fallback());
        assert!(trainer.split_digits());
        assert_eq!(
            (
                trainer.unk_id(),
                trainer.bos_id(),
                trainer.eos_id(),
                trainer.pad_id()
            ),
            (0, 1, 2, -1)
        );
        assert_eq!(trainer.unk_surface(), " \u{2047} ");
        let norm = model.normalizer_spec.unwrap();
        assert_eq!(norm.name(), "identity");
        assert!(norm.add_dummy_prefix());
        assert!(!norm.remove_extra_whitespaces());
        assert!(norm.escape_whitespaces());
        assert!(norm.precompiled_charsmap().is_empty());
        assert_eq!(model.pieces[0].r#type(), PieceType::Unknown);
        assert_eq!(model.pieces[1].piece(), "<s>");
        assert_eq!(model.pieces[1].r#type(), PieceType::Control);
        assert_eq!(model.pieces[3].piece(), "<0x00>");
        assert_eq!(model.pieces[3].r#type(), PieceType::Byte);
        assert_eq!(model.pieces[260].piece(), "▁t");
        assert_eq!(model.pieces[260].score(), -1.0);
        assert_eq!(model.pieces[260].r#type(), PieceType::Normal);
    }

    #[test]
    fn absent_fields_read_as_proto2_defaults() {
        let spec = TrainerSpec::decode(&[][..]).unwrap();
        assert_eq!(spec.model_type(), ModelType::Unigram);
        assert_eq!(spec.pad_id(), -1);
        assert_eq!(spec.bos_piece(), "<s>");
        let norm = NormalizerSpec::decode(&[][..]).unwrap();
        assert!(norm.add_dummy_prefix() && norm.remove_extra_whitespaces());
        let piece = SentencePiece::decode(&[][..]).unwrap();
        assert_eq!(piece.r#type(), PieceType::Normal);
    }

    #[test]
    fn reencoding_small_model_is_lossless_for_declared_fields() {
        let bytes = std::fs::read(small_model_path()).unwrap();
        let model = ModelProto::decode(bytes.as_slice()).unwrap();
        let again = ModelProto::decode(model.encode_to_vec().as_slice()).unwrap();
        assert_eq!(model, again);
    }
}
