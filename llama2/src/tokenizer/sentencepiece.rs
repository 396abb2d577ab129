//! Loading a SentencePiece `tokenizer.model` and converting it into an
//! equivalent `tokenizers` pipeline.
//!
//! SentencePiece BPE encoding works on the whole normalized string (there is
//! no pre-tokenization): the text gets a `▁` dummy prefix, spaces become `▁`,
//! the string is split into characters, and the adjacent pair whose
//! concatenation is the highest-scoring piece is merged repeatedly (leftmost
//! first among equal scores). Characters that are not pieces become their
//! UTF-8 byte pieces `<0xXX>`.
//!
//! The equivalent `tokenizers` pipeline is
//! * normalizer: `Prepend("▁")` (only for non-empty input, as SentencePiece)
//!   then `Replace(" ", "▁")`;
//! * no pre-tokenizer, so merges may cross `▁` exactly as in SentencePiece
//!   (Llama 2 has whitespace-only pieces `▁▁`, `▁▁▁`, ...);
//! * a BPE model with byte fallback whose merges are every split `(left,
//!   right)` of a normal piece into two normal pieces, ranked by the score of
//!   the merged piece. Among pieces with equal scores (Llama 2 gives all
//!   whitespace-only pieces the score -1e9), merges with a longer left part
//!   rank first: a run of `▁` then grows from its left end, which is what
//!   SentencePiece's leftmost-first rule produces;
//! * control and unknown pieces registered as special added tokens (so that
//!   other `tokenizers` users can skip them) but never matched in input text;
//! * decoder `Replace("▁", " ")`, `ByteFallback`, `Fuse`, `Strip(" ", 1, 0)`.
//!
//! Models whose behaviour this pipeline cannot reproduce exactly are rejected
//! with [`TokenizerError::UnsupportedModel`] or
//! [`TokenizerError::UnsupportedModelType`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use prost::Message;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{AddedToken, DecoderWrapper, NormalizerWrapper};

use super::codec::{Decoding, SpecialIds, Tokenizer};
use super::error::{Result, TokenizerError};
use super::pieces::{DEFAULT_UNK_SURFACE, PieceKind, PieceTable, SPACE_SYMBOL, parse_byte_piece};
use super::proto::{ModelProto, ModelType, NormalizerSpec, PieceType, SentencePiece, TrainerSpec};

/// Reads and converts a SentencePiece model file.
pub(crate) fn load(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Converts the bytes of a SentencePiece model; `path` names it in errors.
pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
    let errors = Errors(path);
    let model = SpModel::parse(bytes, &errors)?;
    let merges = model.merges().map_err(|e| errors.unsupported(e))?;
    let hf = build_hf(&model, merges)
        .map_err(|e| errors.unsupported(format!("cannot build the BPE pipeline: {e}")))?;
    let table = PieceTable::new(
        model.pieces,
        model.kinds,
        model.unk_surface,
        model.add_dummy_prefix,
    );
    Ok(Tokenizer::from_parts(
        hf,
        table,
        Decoding::SentencePiece,
        model.specials,
    ))
}

/// Builds the errors about one file.
struct Errors<'a>(&'a Path);

impl Errors<'_> {
    fn not_sp(&self, reason: impl Into<String>) -> TokenizerError {
        TokenizerError::NotSentencePiece {
            path: self.0.to_path_buf(),
            reason: reason.into(),
        }
    }

    fn unsupported(&self, reason: impl Into<String>) -> TokenizerError {
        TokenizerError::UnsupportedModel {
            path: self.0.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// A validated SentencePiece BPE model.
struct SpModel {
    pieces: Vec<String>,
    kinds: Vec<PieceKind>,
    scores: Vec<f32>,
    specials: SpecialIds,
    byte_fallback: bool,
    add_dummy_prefix: bool,
    unk_surface: String,
}

impl SpModel {
    /// Decodes and validates a model protobuf.
    fn parse(bytes: &[u8], errors: &Errors<'_>) -> Result<Self> {
        let model = ModelProto::decode(bytes)
            .map_err(|e| errors.not_sp(format!("invalid protobuf: {e}")))?;
        if model.pieces.is_empty() {
            return Err(errors.not_sp("the model has no pieces"));
        }
        let trainer = model.trainer_spec.clone().unwrap_or_default();
        let normalizer = model.normalizer_spec.clone().unwrap_or_default();
        check_supported(&model, &trainer, &normalizer, errors)?;

        let mut pieces = Vec::with_capacity(model.pieces.len());
        let mut kinds = Vec::with_capacity(model.pieces.len());
        let mut scores = Vec::with_capacity(model.pieces.len());
        let mut seen = HashSet::with_capacity(model.pieces.len());
        for (id, p) in model.pieces.iter().enumerate() {
            let piece = p.piece();
            if piece.is_empty() {
                return Err(errors.not_sp(format!("piece {id} is empty")));
            }
            if !seen.insert(piece) {
                return Err(errors.not_sp(format!("piece {piece:?} appears twice")));
            }
            pieces.push(piece.to_string());
            kinds.push(piece_kind(id, p, errors)?);
            scores.push(p.score());
        }

        let byte_fallback = trainer.byte_fallback();
        let byte_count = kinds
            .iter()
            .filter(|k| matches!(k, PieceKind::Byte(_)))
            .count();
        if byte_fallback && byte_count != 256 {
            return Err(errors.unsupported(format!(
                "byte_fallback with {byte_count} of the 256 byte pieces"
            )));
        }

        let specials = special_ids(&pieces, &kinds, &trainer, errors)?;
        Ok(Self {
            pieces,
            kinds,
            scores,
            specials,
            byte_fallback,
            add_dummy_prefix: normalizer.add_dummy_prefix(),
            unk_surface: trainer
                .unk_surface
                .clone()
                .unwrap_or_else(|| DEFAULT_UNK_SURFACE.to_string()),
        })
    }

    /// BPE merges in rank order: every split of a normal piece into two
    /// normal pieces, by descending score of the merged piece, then by
    /// descending length of the left part (see the module docs).
    fn merges(&self) -> std::result::Result<Vec<(String, String)>, String> {
        let normal: HashMap<&str, u32> = self
            .pieces
            .iter()
            .zip(&self.kinds)
            .enumerate()
            .filter(|(_, (_, k))| **k == PieceKind::Normal)
            .map(|(id, (p, _))| (p.as_str(), id as u32))
            .collect();
        let mut ranked: Vec<(f32, usize, u32, u32)> = Vec::new();
        for (id, piece) in self.pieces.iter().enumerate() {
            if self.kinds[id] != PieceKind::Normal {
                continue;
            }
            for (split, c) in piece.char_indices() {
                // SentencePiece could merge a character that is not a piece;
                // a byte-fallback pipeline cannot.
                if !normal.contains_key(&piece[split..split + c.len_utf8()]) {
                    return Err(format!(
                        "piece {piece:?} contains {c:?}, which is not itself a piece"
                    ));
                }
                let (left, right) = piece.split_at(split);
                if let (Some(&l), Some(&r)) = (normal.get(left), normal.get(right)) {
                    ranked.push((self.scores[id], left.chars().count(), l, r));
                }
            }
        }
        ranked.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(b.1.cmp(&a.1))
                .then(a.2.cmp(&b.2))
                .then(a.3.cmp(&b.3))
        });
        Ok(ranked
            .into_iter()
            .map(|(_, _, l, r)| {
                (
                    self.pieces[l as usize].clone(),
                    self.pieces[r as usize].clone(),
                )
            })
            .collect())
    }

    /// Pieces of the given kinds.
    fn pieces_of_kind(&self, pred: impl Fn(PieceKind) -> bool) -> Vec<&str> {
        self.pieces
            .iter()
            .zip(&self.kinds)
            .filter(|(_, k)| pred(**k))
            .map(|(p, _)| p.as_str())
            .collect()
    }
}

/// Rejects models whose normalization or segmentation settings differ from
/// what the pipeline reproduces.
fn check_supported(
    model: &ModelProto,
    trainer: &TrainerSpec,
    normalizer: &NormalizerSpec,
    errors: &Errors<'_>,
) -> Result<()> {
    let model_type = trainer.model_type.unwrap_or(ModelType::Unigram as i32);
    if model_type != ModelType::Bpe as i32 {
        return Err(TokenizerError::UnsupportedModelType {
            path: errors.0.to_path_buf(),
            model_type: ModelType::try_from(model_type)
                .map(|t| format!("{t:?}").to_uppercase())
                .unwrap_or_else(|_| model_type.to_string()),
        });
    }
    if !normalizer.precompiled_charsmap().is_empty() {
        return Err(errors.unsupported(format!(
            "normalization rule {:?} (only \"identity\" is supported)",
            normalizer.name()
        )));
    }
    if normalizer.remove_extra_whitespaces() {
        return Err(errors.unsupported("remove_extra_whitespaces=true"));
    }
    if !normalizer.escape_whitespaces() {
        return Err(errors.unsupported("escape_whitespaces=false"));
    }
    if trainer.treat_whitespace_as_suffix() {
        return Err(errors.unsupported("treat_whitespace_as_suffix=true"));
    }
    if let Some(denorm) = &model.denormalizer_spec
        && !denorm.precompiled_charsmap().is_empty()
    {
        return Err(errors.unsupported("a denormalizer rule"));
    }
    Ok(())
}

/// The kind of piece `id`.
fn piece_kind(id: usize, p: &SentencePiece, errors: &Errors<'_>) -> Result<PieceKind> {
    let piece = p.piece();
    let raw = p.r#type.unwrap_or(PieceType::Normal as i32);
    match PieceType::try_from(raw) {
        Ok(PieceType::Normal) => Ok(PieceKind::Normal),
        Ok(PieceType::Unknown) => Ok(PieceKind::Unknown),
        Ok(PieceType::Control) => Ok(PieceKind::Control),
        Ok(PieceType::Byte) => parse_byte_piece(piece)
            .map(PieceKind::Byte)
            .ok_or_else(|| errors.not_sp(format!("byte piece {id} is {piece:?}, not <0xXX>"))),
        Ok(PieceType::UserDefined) => {
            Err(errors.unsupported(format!("user-defined piece {piece:?}")))
        }
        Ok(PieceType::Unused) => Err(errors.unsupported(format!("unused piece {piece:?}"))),
        Err(_) => Err(errors.not_sp(format!("piece {id} has unknown type {raw}"))),
    }
}

/// Special ids, looked up by piece string as `SentencePieceProcessor` does:
/// BOS/EOS/PAD are the control pieces named in the trainer spec, UNK is the
/// unknown piece.
fn special_ids(
    pieces: &[String],
    kinds: &[PieceKind],
    trainer: &TrainerSpec,
    errors: &Errors<'_>,
) -> Result<SpecialIds> {
    // The trainer spec's ids, when set, must be -1 (none) or inside the vocabulary.
    for (what, id) in [
        ("unk_id", trainer.unk_id),
        ("bos_id", trainer.bos_id),
        ("eos_id", trainer.eos_id),
        ("pad_id", trainer.pad_id),
    ] {
        if let Some(id) = id
            && !(id == -1 || (0..pieces.len() as i64).contains(&i64::from(id)))
        {
            return Err(errors.not_sp(format!(
                "trainer_spec.{what} {id} is outside the vocabulary of {} pieces",
                pieces.len()
            )));
        }
    }
    let unk: Vec<u32> = (0..kinds.len() as u32)
        .filter(|&id| kinds[id as usize] == PieceKind::Unknown)
        .collect();
    let unk = match unk.as_slice() {
        [id] => *id,
        [] => return Err(errors.not_sp("the model has no unknown piece")),
        _ => return Err(errors.not_sp("the model has several unknown pieces")),
    };
    let control = |piece: &str| {
        (0..pieces.len() as u32)
            .find(|&id| pieces[id as usize] == piece && kinds[id as usize] == PieceKind::Control)
    };
    let required = |what: &'static str, piece: &str| {
        control(piece).ok_or_else(|| TokenizerError::MissingSpecialToken {
            path: errors.0.to_path_buf(),
            what,
            piece: piece.to_string(),
        })
    };
    Ok(SpecialIds {
        bos: required("BOS", trainer.bos_piece())?,
        eos: required("EOS", trainer.eos_piece())?,
        unk: Some(unk),
        pad: control(trainer.pad_piece()),
    })
}

/// Assembles the `tokenizers` pipeline described in the module docs.
fn build_hf(
    model: &SpModel,
    merges: Vec<(String, String)>,
) -> tokenizers::Result<tokenizers::Tokenizer> {
    let space = SPACE_SYMBOL.to_string();
    let vocab: Vocab = model
        .pieces
        .iter()
        .enumerate()
        .map(|(id, p)| (p.clone(), id as u32))
        .collect();
    let unk_piece = model.pieces[model.specials.unk.unwrap_or_default() as usize].clone();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .unk_token(unk_piece)
        .byte_fallback(model.byte_fallback)
        // SentencePiece merges runs of unknown characters into one <unk>.
        .fuse_unk(true)
        .build()?;

    let mut normalizers: Vec<NormalizerWrapper> = Vec::new();
    if model.add_dummy_prefix {
        normalizers.push(Prepend::new(space.clone()).into());
    }
    normalizers.push(Replace::new(" ", space.as_str())?.into());

    let mut decoders: Vec<DecoderWrapper> = vec![
        Replace::new(space.as_str(), " ")?.into(),
        ByteFallback::default().into(),
        Fuse::default().into(),
    ];
    if model.add_dummy_prefix {
        decoders.push(Strip::new(' ', 1, 0).into());
    }

    let mut hf = tokenizers::Tokenizer::new(bpe);
    hf.with_normalizer(Some(NormalizerSequence::new(normalizers)))?;
    hf.with_decoder(Some(DecoderSequence::new(decoders)));
    let specials: Vec<AddedToken> = model
        .pieces_of_kind(|k| matches!(k, PieceKind::Control | PieceKind::Unknown))
        .into_iter()
        .map(|p| AddedToken::from(p.to_string(), true))
        .collect();
    hf.add_special_tokens(specials)?;
    hf.set_encode_special_tokens(true);
    Ok(hf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::testdata::{TempFile, small_model_path};

    fn small_proto() -> ModelProto {
        ModelProto::decode(std::fs::read(small_model_path()).unwrap().as_slice()).unwrap()
    }

    fn load_modified(name: &str, edit: impl FnOnce(&mut ModelProto)) -> Result<Tokenizer> {
        let mut model = small_proto();
        edit(&mut model);
        let file = TempFile::new(name, &model.encode_to_vec());
        load(file.path())
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = load(Path::new("/nonexistent/dir/tokenizer.model")).unwrap_err();
        assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/dir/tokenizer.model"),
            "{err}"
        );
    }

    #[test]
    fn non_protobuf_files_are_rejected() {
        for (name, bytes) in [
            ("json.model", &b"{\"model\": {\"type\": \"BPE\"}}"[..]),
            ("empty.model", &b""[..]),
            ("garbage.model", &[0xFFu8, 0xFF, 0xFF, 0xFF, 0x0F][..]),
        ] {
            let file = TempFile::new(name, bytes);
            let err = load(file.path()).unwrap_err();
            assert!(
                matches!(err, TokenizerError::NotSentencePiece { .. }),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn unigram_model_is_unsupported() {
        let err = load_modified("unigram.model", |m| {
            m.trainer_spec
                .as_mut()
                .unwrap()
                .set_model_type(ModelType::Unigram);
        })
        .unwrap_err();
        assert!(
            matches!(&err, TokenizerError::UnsupportedModelType { model_type, .. } if model_type == "UNIGRAM"),
            "{err:?}"
        );
        assert!(err.to_string().contains("unigram.model"), "{err}");
    }

    #[test]
    fn unsupported_features_are_rejected() {
        type Edit = fn(&mut ModelProto);
        let edits: [(&str, Edit); 6] = [
            ("nfkc", |m| {
                m.normalizer_spec = Some(NormalizerSpec {
                    name: Some("nmt_nfkc".into()),
                    precompiled_charsmap: Some(vec![1, 2, 3]),
                    ..m.normalizer_spec.clone().unwrap()
                })
            }),
            ("extra_ws", |m| {
                m.normalizer_spec.as_mut().unwrap().remove_extra_whitespaces = Some(true)
            }),
            ("suffix", |m| {
                m.trainer_spec.as_mut().unwrap().treat_whitespace_as_suffix = Some(true)
            }),
            ("user_defined", |m| {
                m.pieces.push(SentencePiece {
                    piece: Some("<mask>".into()),
                    r#type: Some(PieceType::UserDefined as i32),
                    ..Default::default()
                });
            }),
            ("missing_byte", |m| {
                m.pieces.remove(3 + 0x41);
            }),
            ("foreign_char", |m| {
                m.pieces.push(SentencePiece {
                    piece: Some("▁\u{13000}".into()),
                    score: Some(-5000.0),
                    ..Default::default()
                });
            }),
        ];
        for (name, edit) in edits {
            let err = load_modified(&format!("{name}.model"), edit).unwrap_err();
            assert!(
                matches!(err, TokenizerError::UnsupportedModel { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn invalid_models_are_rejected() {
        type Edit = fn(&mut ModelProto);
        let edits: [(&str, Edit); 4] = [
            ("no_unk", |m| m.pieces[0].set_type(PieceType::Normal)),
            ("eos_out_of_vocab", |m| {
                m.trainer_spec.as_mut().unwrap().eos_id = Some(32000)
            }),
            ("duplicate", |m| {
                m.pieces[300].piece = m.pieces[301].piece.clone()
            }),
            ("bad_byte", |m| m.pieces[3].piece = Some("<0x0>".into())),
        ];
        for (name, edit) in edits {
            let err = load_modified(&format!("{name}.model"), edit).unwrap_err();
            assert!(
                matches!(err, TokenizerError::NotSentencePiece { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn special_ids_come_from_the_model() {
        // Swap the roles of <s> and </s> by renaming the pieces in the trainer spec.
        let tok = load_modified("swapped.model", |m| {
            let t = m.trainer_spec.as_mut().unwrap();
            t.bos_piece = Some("</s>".into());
            t.eos_piece = Some("<s>".into());
        })
        .unwrap();
        assert_eq!((tok.bos_id(), tok.eos_id()), (2, 1));
        assert_eq!(tok.pad_id(), None);
        let tok = load_modified("pad.model", |m| {
            m.pieces.push(SentencePiece {
                piece: Some("<pad>".into()),
                r#type: Some(PieceType::Control as i32),
                ..Default::default()
            })
        })
        .unwrap();
        assert_eq!(tok.pad_id(), Some(1200));
        assert_eq!(tok.decode(&[1200, 1200]).unwrap(), "");
        let ids = tok.encode("<pad>", false, false).unwrap();
        assert!(!ids.contains(&1200));
        let err =
            load_modified("nobos.model", |m| m.pieces[1].set_type(PieceType::Normal)).unwrap_err();
        assert!(
            matches!(err, TokenizerError::MissingSpecialToken { what: "BOS", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn without_dummy_prefix_no_space_is_added_or_removed() {
        let tok = load_modified("noprefix.model", |m| {
            m.normalizer_spec.as_mut().unwrap().add_dummy_prefix = Some(false)
        })
        .unwrap();
        let ids = tok.encode("hello world", false, false).unwrap();
        assert!(!tok.id_to_piece(ids[0]).unwrap().starts_with(SPACE_SYMBOL));
        assert_eq!(tok.decode(&ids).unwrap(), "hello world");
        let ids = tok.encode(" hello", false, false).unwrap();
        assert_eq!(tok.decode(&ids).unwrap(), " hello");
    }
}
