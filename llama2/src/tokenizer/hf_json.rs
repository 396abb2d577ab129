//! Loading a Hugging Face `tokenizer.json`.
//!
//! The file is loaded with `tokenizers` and the SentencePiece view of its
//! vocabulary is reconstructed:
//! * the model's unknown token is the unknown piece;
//! * special added tokens are control pieces; they are never matched in input
//!   text (SentencePiece treats a literal `<s>` as text) and decode to nothing;
//! * with BPE byte fallback, `<0xXX>` tokens are byte pieces;
//! * BOS/EOS/PAD are the tokens `<s>`, `</s>` and `<pad>`.
//!
//! When the decoder follows the SentencePiece convention (it maps `▁` to a
//! space, as files written by [`Tokenizer::save_hf_json`] and Llama's
//! `tokenizer.json` do), ids are decoded with SentencePiece's rules; the
//! leading space is dropped when the decoder strips it. Other files are
//! decoded with their own decoder.

use std::path::Path;

use serde_json::Value;
use tokenizers::ModelWrapper;

use super::codec::{Decoding, SpecialIds, Tokenizer};
use super::error::{Result, TokenizerError};
use super::pieces::{DEFAULT_UNK_SURFACE, PieceKind, PieceTable, SPACE_SYMBOL, parse_byte_piece};

/// Reads and loads a `tokenizer.json`.
pub(crate) fn load(path: &Path) -> Result<Tokenizer> {
    let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_bytes(&bytes, path)
}

/// Loads the bytes of a `tokenizer.json`; `path` names it in errors.
pub(crate) fn from_bytes(bytes: &[u8], path: &Path) -> Result<Tokenizer> {
    let invalid = |reason: String| TokenizerError::InvalidHfJson {
        path: path.to_path_buf(),
        reason,
    };
    let mut hf = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| invalid(e.to_string()))?;
    hf.with_truncation(None)
        .map_err(|e| invalid(e.to_string()))?;
    hf.with_padding(None);
    hf.set_encode_special_tokens(true);

    let (unk_token, byte_fallback) = match hf.get_model() {
        ModelWrapper::BPE(bpe) => (bpe.unk_token.clone(), bpe.byte_fallback),
        _ => (None, false),
    };
    let added = hf.get_added_tokens_decoder();
    let vocab_size = hf.get_vocab_size(true);
    let mut pieces = Vec::with_capacity(vocab_size);
    let mut kinds = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size as u32 {
        let piece = hf
            .id_to_token(id)
            .ok_or_else(|| invalid(format!("ids are not contiguous: no token has id {id}")))?;
        let kind = if unk_token.as_deref() == Some(piece.as_str()) {
            PieceKind::Unknown
        } else if added.get(&id).is_some_and(|t| t.special) {
            PieceKind::Control
        } else if let Some(b) = parse_byte_piece(&piece).filter(|_| byte_fallback) {
            PieceKind::Byte(b)
        } else {
            PieceKind::Normal
        };
        pieces.push(piece);
        kinds.push(kind);
    }

    let lookup = |piece: &str| {
        hf.token_to_id(piece)
            .filter(|&id| (id as usize) < vocab_size)
    };
    let required = |what: &'static str, piece: &str| {
        lookup(piece).ok_or_else(|| TokenizerError::MissingSpecialToken {
            path: path.to_path_buf(),
            what,
            piece: piece.to_string(),
        })
    };
    let specials = SpecialIds {
        bos: required("BOS", "<s>")?,
        eos: required("EOS", "</s>")?,
        unk: unk_token.as_deref().and_then(lookup),
        pad: lookup("<pad>"),
    };

    let decoder = serde_json::to_value(hf.get_decoder()).map_err(|e| invalid(e.to_string()))?;
    let (decoding, strip) = if maps_space_symbol(&decoder) {
        (Decoding::SentencePiece, strips_leading_space(&decoder))
    } else {
        (Decoding::Hf, false)
    };
    let table = PieceTable::new(pieces, kinds, DEFAULT_UNK_SURFACE.to_string(), strip);
    Ok(Tokenizer::from_parts(hf, table, decoding, specials))
}

/// Calls `f` on every JSON object nested in `v` (including `v`).
fn any_object(v: &Value, f: &impl Fn(&serde_json::Map<String, Value>) -> bool) -> bool {
    match v {
        Value::Object(map) => f(map) || map.values().any(|x| any_object(x, f)),
        Value::Array(items) => items.iter().any(|x| any_object(x, f)),
        _ => false,
    }
}

fn has_type(map: &serde_json::Map<String, Value>, ty: &str) -> bool {
    map.get("type").and_then(Value::as_str) == Some(ty)
}

/// Whether the decoder turns `▁` into spaces (`Replace` or `Metaspace`).
fn maps_space_symbol(decoder: &Value) -> bool {
    let space = SPACE_SYMBOL.to_string();
    any_object(decoder, &|m| {
        has_type(m, "Metaspace")
            || (has_type(m, "Replace")
                && m.get("pattern")
                    .and_then(|p| p.get("String"))
                    .and_then(Value::as_str)
                    == Some(space.as_str())
                && m.get("content").and_then(Value::as_str) == Some(" "))
    })
}

/// Whether the decoder removes the leading space of the text.
fn strips_leading_space(decoder: &Value) -> bool {
    any_object(decoder, &|m| {
        (has_type(m, "Strip")
            && m.get("content").and_then(Value::as_str) == Some(" ")
            && m.get("start").and_then(Value::as_u64).unwrap_or(0) > 0)
            || (has_type(m, "Metaspace")
                && (m
                    .get("prepend_scheme")
                    .and_then(Value::as_str)
                    .is_some_and(|s| s != "never")
                    || m.get("add_prefix_space").and_then(Value::as_bool) == Some(true)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::testdata::{TempFile, all_cases, small};

    #[test]
    fn saved_json_round_trips_on_all_cases() {
        for (name, tok, cases) in all_cases() {
            let file = TempFile::new(&format!("{name}-tokenizer.json"), b"");
            tok.save_hf_json(file.path()).unwrap();
            let again = Tokenizer::from_hf_json(file.path()).unwrap();
            assert_eq!(again.decoding(), Decoding::SentencePiece, "{name}");
            assert_eq!(again.vocab_size(), tok.vocab_size(), "{name}");
            assert_eq!(
                (
                    again.bos_id(),
                    again.eos_id(),
                    again.unk_id(),
                    again.pad_id()
                ),
                (tok.bos_id(), tok.eos_id(), tok.unk_id(), tok.pad_id()),
                "{name}"
            );
            for id in 0..tok.vocab_size() as u32 {
                assert_eq!(again.id_to_piece(id), tok.id_to_piece(id), "{name}: {id}");
                assert_eq!(again.piece_kind(id), tok.piece_kind(id), "{name}: {id}");
            }
            for case in &cases.encode {
                assert_eq!(
                    again.encode(&case.text, false, false).unwrap(),
                    case.ids,
                    "{name}: {:?}",
                    case.text
                );
            }
            for case in &cases.decode {
                assert_eq!(
                    again.decode(&case.ids).unwrap(),
                    case.text,
                    "{name}: {:?}",
                    case.ids
                );
            }
        }
    }

    #[test]
    fn saved_json_is_a_standard_tokenizer_json() {
        let file = TempFile::new("std-tokenizer.json", b"");
        small().save_hf_json(file.path()).unwrap();
        let json: Value = serde_json::from_slice(&std::fs::read(file.path()).unwrap()).unwrap();
        assert_eq!(json["model"]["type"], "BPE");
        assert_eq!(json["model"]["byte_fallback"], true);
        assert_eq!(json["pre_tokenizer"], Value::Null);
        let added: Vec<&str> = json["added_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["content"].as_str().unwrap())
            .collect();
        assert_eq!(added, ["<unk>", "<s>", "</s>"]);
        // Plain `tokenizers` loading matches too, apart from special-token matching.
        let plain = tokenizers::Tokenizer::from_file(file.path()).unwrap();
        let text = "Hello  world\n 123 中文 😀";
        let ids = small().encode(text, false, false).unwrap();
        assert_eq!(plain.encode(text, false).unwrap().get_ids(), ids.as_slice());
        assert_eq!(
            plain.decode(&ids, true).unwrap(),
            small().decode(&ids).unwrap()
        );
    }

    #[test]
    fn invalid_files_are_rejected() {
        let err = load(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
        let file = TempFile::new("broken-tokenizer.json", b"{\"model\": 3}");
        let err = load(file.path()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::InvalidHfJson { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("broken-tokenizer.json"), "{err}");
    }

    #[test]
    fn json_without_bos_is_rejected() {
        let file = TempFile::new("nobos-tokenizer.json", b"");
        small().save_hf_json(file.path()).unwrap();
        let text = std::fs::read_to_string(file.path())
            .unwrap()
            .replace("\"<s>\"", "\"<S>\"");
        std::fs::write(file.path(), text).unwrap();
        let err = load(file.path()).unwrap_err();
        assert!(
            matches!(err, TokenizerError::MissingSpecialToken { what: "BOS", .. }),
            "{err:?}"
        );
    }

    #[test]
    fn non_sentencepiece_json_uses_its_own_decoder() {
        let json = r###"{
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [
                {"id": 0, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
                {"id": 1, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
            ],
            "normalizer": null,
            "pre_tokenizer": {"type": "WhitespaceSplit"},
            "post_processor": null,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordLevel", "vocab": {"<s>": 0, "</s>": 1, "hello": 2, "world": 3, "[UNK]": 4}, "unk_token": "[UNK]"}
        }"###;
        let file = TempFile::new("wordlevel-tokenizer.json", json.as_bytes());
        let tok = load(file.path()).unwrap();
        assert_eq!(tok.decoding(), Decoding::Hf);
        let ids = tok.encode("hello world", true, true).unwrap();
        assert_eq!(ids, [0, 2, 3, 1]);
        assert_eq!(tok.decode(&ids).unwrap(), "hello world");
        let mut stream = tok.stream_decoder();
        let streamed: String = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        assert_eq!(streamed + &stream.finish().unwrap(), "hello world");
    }
}
