//! The [`Tokenizer`] type: Llama 2 text ⇄ token ids.

use std::path::Path;

use super::decode;
use super::error::{Result, TokenizerError};
use super::pieces::{PieceKind, PieceTable};
use super::stream::StreamDecoder;
use super::{hf_json, sentencepiece};

/// How ids are turned back into text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decoding {
    /// SentencePiece's `decode` rules (module `decode`).
    SentencePiece,
    /// The decoder configured in a `tokenizer.json` that does not follow the
    /// SentencePiece `▁` convention.
    Hf,
}

/// Special token ids of a vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpecialIds {
    pub(crate) bos: u32,
    pub(crate) eos: u32,
    pub(crate) unk: Option<u32>,
    pub(crate) pad: Option<u32>,
}

/// A Llama 2 tokenizer.
///
/// Loaded from Meta's SentencePiece `tokenizer.model` (or from a
/// `tokenizer.json` written by [`Tokenizer::save_hf_json`]), encoding and
/// decoding give exactly the ids and text of the `sentencepiece` package for
/// the same model: literal `<s>`, `</s>`, `[INST]` in the input are plain
/// text, spaces are preserved as written, characters outside the vocabulary
/// become UTF-8 byte tokens, and decoding drops control tokens and the
/// leading dummy-prefix space. Other `tokenizer.json` files are run with the
/// pipeline they describe.
///
/// Encoding runs through a [`tokenizers::Tokenizer`] pipeline (available via
/// [`Tokenizer::hf`] and savable with [`Tokenizer::save_hf_json`]).
///
/// ```
/// use llama2::tokenizer::Tokenizer;
///
/// # let path = "../tests/data/llama2-tokenizer/tokenizer.model";
/// let tok = Tokenizer::from_file(path)?; // Meta's tokenizer.model
/// let ids = tok.encode("Hello world!", true, false)?;
/// assert_eq!(ids, [1, 15043, 3186, 29991]);
/// assert_eq!(tok.decode(&ids)?, "Hello world!");
/// # Ok::<(), llama2::tokenizer::TokenizerError>(())
/// ```
#[derive(Clone)]
pub struct Tokenizer {
    hf: tokenizers::Tokenizer,
    pieces: PieceTable,
    decoding: Decoding,
    specials: SpecialIds,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("bos_id", &self.specials.bos)
            .field("eos_id", &self.specials.eos)
            .field("unk_id", &self.specials.unk)
            .field("pad_id", &self.specials.pad)
            .field("decoding", &self.decoding)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    pub(crate) fn from_parts(
        hf: tokenizers::Tokenizer,
        pieces: PieceTable,
        decoding: Decoding,
        specials: SpecialIds,
    ) -> Self {
        Self {
            hf,
            pieces,
            decoding,
            specials,
        }
    }

    /// Loads a SentencePiece model (Meta's `tokenizer.model`).
    ///
    /// Only BPE models with identity normalization are accepted (Llama 2's
    /// configuration); other models fail with a typed error naming the file.
    pub fn from_sentencepiece(path: impl AsRef<Path>) -> Result<Self> {
        sentencepiece::load(path.as_ref())
    }

    /// Loads a SentencePiece model from memory.
    pub fn from_sentencepiece_bytes(bytes: &[u8]) -> Result<Self> {
        sentencepiece::from_bytes(bytes, Path::new("<memory>"))
    }

    /// Loads a Hugging Face `tokenizer.json`.
    ///
    /// Special added tokens are treated as control tokens: they are never
    /// produced from input text and decode to nothing. BOS and EOS are the
    /// tokens `<s>` and `</s>`, PAD is `<pad>` if present. Truncation,
    /// padding and the post-processor of the file are not applied.
    pub fn from_hf_json(path: impl AsRef<Path>) -> Result<Self> {
        hf_json::load(path.as_ref())
    }

    /// Loads a Hugging Face `tokenizer.json` from memory; `name` labels it in
    /// errors.
    pub fn from_hf_json_bytes(bytes: &[u8], name: impl AsRef<Path>) -> Result<Self> {
        hf_json::from_bytes(bytes, name.as_ref())
    }

    /// Loads either format: `.json` files as `tokenizer.json`, `.model` files
    /// as SentencePiece, anything else by looking at its content.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") => return Self::from_hf_json(path),
            Some("model") => return Self::from_sentencepiece(path),
            _ => {}
        }
        let bytes = std::fs::read(path).map_err(|source| TokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            hf_json::from_bytes(&bytes, path)
        } else {
            sentencepiece::from_bytes(&bytes, path)
        }
    }

    /// Encodes `text`, optionally adding BOS before and EOS after, as Meta's
    /// `Tokenizer.encode(s, bos, eos)`.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Result<Vec<u32>> {
        let encoding = self
            .hf
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Tokenization(e.to_string()))?;
        let body = encoding.get_ids();
        let mut ids = Vec::with_capacity(body.len() + 2);
        if bos {
            ids.push(self.specials.bos);
        }
        ids.extend_from_slice(body);
        if eos {
            ids.push(self.specials.eos);
        }
        Ok(ids)
    }

    /// Decodes ids to text as SentencePiece's `decode`: control tokens vanish,
    /// the unknown token reads `" ⁇ "`, byte tokens are joined into UTF-8
    /// (U+FFFD per invalid byte), `▁` becomes a space and the first text
    /// token loses its leading dummy-prefix space.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self.decoding {
            Decoding::SentencePiece => decode::decode(&self.pieces, ids),
            Decoding::Hf => {
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size()) {
                    return Err(TokenizerError::IdOutOfRange {
                        id,
                        vocab_size: self.vocab_size(),
                    });
                }
                self.hf
                    .decode(ids, true)
                    .map_err(|e| TokenizerError::Tokenization(e.to_string()))
            }
        }
    }

    /// A decoder that turns ids into text one at a time.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The piece string of `id` (`▁Hello`, `<0x0A>`, `<s>`, ...).
    pub fn id_to_piece(&self, id: u32) -> Option<&str> {
        self.pieces.piece(id)
    }

    /// The id of a piece string.
    pub fn piece_to_id(&self, piece: &str) -> Option<u32> {
        self.hf.token_to_id(piece)
    }

    /// The kind of piece `id` is.
    pub fn piece_kind(&self, id: u32) -> Option<PieceKind> {
        self.pieces.kind(id)
    }

    /// Number of pieces; every id is below it.
    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }

    /// Beginning-of-sequence id.
    pub fn bos_id(&self) -> u32 {
        self.specials.bos
    }

    /// End-of-sequence id.
    pub fn eos_id(&self) -> u32 {
        self.specials.eos
    }

    /// Unknown-token id, if the vocabulary has one.
    pub fn unk_id(&self) -> Option<u32> {
        self.specials.unk
    }

    /// Padding id, if the vocabulary has one (Llama 2 has none).
    pub fn pad_id(&self) -> Option<u32> {
        self.specials.pad
    }

    /// Ids of all control tokens (`<s>`, `</s>`, ...).
    pub fn control_ids(&self) -> Vec<u32> {
        self.pieces.ids_where(|k| k == PieceKind::Control)
    }

    /// The underlying `tokenizers` pipeline.
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.hf
    }

    /// Writes the pipeline as a Hugging Face `tokenizer.json`.
    ///
    /// Loading the file with [`Tokenizer::from_hf_json`] gives the same ids
    /// and text.
    pub fn save_hf_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        self.hf.save(path, true).map_err(|e| TokenizerError::Save {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    pub(crate) fn pieces(&self) -> &PieceTable {
        &self.pieces
    }

    pub(crate) fn decoding(&self) -> Decoding {
        self.decoding
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokenizer::testdata::{TempFile, all_cases, llama2, llama2_model_path, small};

    #[test]
    fn tokenizer_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Tokenizer>();
        let tok = llama2();
        let ids: Vec<Vec<u32>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|i| s.spawn(move || tok.encode(&format!("thread {i}"), true, false).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(ids[3], tok.encode("thread 3", true, false).unwrap());
    }

    #[test]
    fn hello_world_matches_meta() {
        let tok = llama2();
        assert_eq!(
            tok.encode("Hello world!", false, false).unwrap(),
            [15043, 3186, 29991]
        );
        assert_eq!(
            tok.encode("Hello world!", true, true).unwrap(),
            [1, 15043, 3186, 29991, 2]
        );
        assert_eq!(
            tok.decode(&[1, 15043, 3186, 29991, 2]).unwrap(),
            "Hello world!"
        );
    }

    #[test]
    fn metadata_matches_case_files() {
        for (name, tok, cases) in all_cases() {
            assert_eq!(tok.vocab_size(), cases.vocab_size, "{name}");
            assert_eq!(tok.bos_id() as i64, cases.bos_id, "{name}");
            assert_eq!(tok.eos_id() as i64, cases.eos_id, "{name}");
            assert_eq!(tok.unk_id().map(i64::from), Some(cases.unk_id), "{name}");
            assert_eq!(
                tok.pad_id().map(i64::from).unwrap_or(-1),
                cases.pad_id,
                "{name}"
            );
            assert_eq!(tok.control_ids(), [1, 2], "{name}");
        }
        assert_eq!(llama2().piece_kind(0), Some(PieceKind::Unknown));
        assert_eq!(llama2().piece_kind(13), Some(PieceKind::Byte(b'\n')));
        assert_eq!(llama2().piece_to_id("▁Hello"), Some(15043));
        assert_eq!(llama2().id_to_piece(29871), Some("▁"));
        assert_eq!(llama2().id_to_piece(32000), None);
    }

    #[test]
    fn encode_matches_sentencepiece_on_all_cases() {
        for (name, tok, cases) in all_cases() {
            assert!(cases.encode.len() >= 200, "{name}");
            let mut failures = Vec::new();
            for case in &cases.encode {
                let ids = tok.encode(&case.text, false, false).unwrap();
                if ids != case.ids {
                    failures.push(format!("{:?}: got {ids:?}, want {:?}", case.text, case.ids));
                }
            }
            assert!(
                failures.is_empty(),
                "{name}: {} mismatches:\n{}",
                failures.len(),
                failures.join("\n")
            );
        }
    }

    #[test]
    fn bos_and_eos_wrap_the_text_ids() {
        for (name, tok, cases) in all_cases() {
            for case in cases.encode.iter().take(50) {
                let with = tok.encode(&case.text, true, true).unwrap();
                assert_eq!(with[0], tok.bos_id(), "{name}");
                assert_eq!(with[with.len() - 1], tok.eos_id(), "{name}");
                assert_eq!(&with[1..with.len() - 1], case.ids.as_slice(), "{name}");
                assert_eq!(
                    tok.encode(&case.text, false, true).unwrap().len(),
                    case.ids.len() + 1
                );
            }
        }
    }

    #[test]
    fn pieces_match_sentencepiece() {
        for (name, tok, cases) in all_cases() {
            for case in &cases.encode {
                let pieces: Vec<&str> = case
                    .ids
                    .iter()
                    .map(|&id| tok.id_to_piece(id).unwrap())
                    .collect();
                assert_eq!(pieces, case.pieces, "{name}: {:?}", case.text);
            }
        }
    }

    #[test]
    fn decode_matches_sentencepiece_on_all_cases() {
        for (name, tok, cases) in all_cases() {
            for case in &cases.encode {
                assert_eq!(
                    tok.decode(&case.ids).unwrap(),
                    case.decoded,
                    "{name}: {:?}",
                    case.ids
                );
            }
            assert!(cases.decode.len() >= 150, "{name}");
            for case in &cases.decode {
                assert_eq!(
                    tok.decode(&case.ids).unwrap(),
                    case.text,
                    "{name}: {:?}",
                    case.ids
                );
            }
        }
    }

    #[test]
    fn literal_special_strings_are_plain_text() {
        let tok = llama2();
        for text in ["<s>", "</s>", "<unk>", "[INST]", "<<SYS>>", "<0x41>"] {
            let ids = tok.encode(text, false, false).unwrap();
            assert!(
                ids.iter()
                    .all(|&id| tok.piece_kind(id) == Some(PieceKind::Normal)),
                "{text}: {ids:?}"
            );
            assert_eq!(tok.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn out_of_range_ids_are_errors() {
        let tok = small();
        let err = tok.decode(&[1, tok.vocab_size() as u32]).unwrap_err();
        assert!(
            matches!(err, TokenizerError::IdOutOfRange { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn from_file_dispatches_on_extension_and_content() {
        let tok = Tokenizer::from_file(llama2_model_path()).unwrap();
        assert_eq!(
            tok.encode("Hello world!", false, false).unwrap(),
            [15043, 3186, 29991]
        );
        let bytes = std::fs::read(llama2_model_path()).unwrap();
        let unnamed = TempFile::new("llama-tokenizer.bin", &bytes);
        let tok = Tokenizer::from_file(unnamed.path()).unwrap();
        assert_eq!(
            tok.encode("Hello world!", false, false).unwrap(),
            [15043, 3186, 29991]
        );
        let json = TempFile::new("tokenizer-json.bin", b"");
        small().save_hf_json(json.path()).unwrap();
        let tok = Tokenizer::from_file(json.path()).unwrap();
        assert_eq!(
            tok.encode("Hello world!", false, false).unwrap(),
            small().encode("Hello world!", false, false).unwrap()
        );
        let tok = Tokenizer::from_sentencepiece_bytes(&bytes).unwrap();
        assert_eq!(tok.vocab_size(), 32000);
    }
}
