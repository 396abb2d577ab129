//! Incremental decoding for generation loops.

use super::codec::{Decoding, Tokenizer};
use super::decode::DecodeState;
use super::error::{Result, TokenizerError};

/// Turns token ids into text one id at a time.
///
/// Each [`push`](Self::push) returns the text that became final with that id
/// (possibly empty: control tokens produce nothing, and the bytes of a
/// character split over several byte-fallback tokens are held back until the
/// character is complete). [`finish`](Self::finish) returns what is still
/// held back. The concatenation of all returned strings equals
/// [`Tokenizer::decode`] of the whole id sequence, including the removal of
/// the leading dummy-prefix space and one U+FFFD per invalid byte.
///
/// ```
/// use llama2::tokenizer::Tokenizer;
///
/// # let path = "../tests/data/llama2-tokenizer/tokenizer.model";
/// let tok = Tokenizer::from_file(path)?; // Meta's tokenizer.model
/// let mut stream = tok.stream_decoder();
/// let mut text = String::new();
/// for id in tok.encode("Hello world!", true, false)? {
///     text += &stream.push(id)?;
/// }
/// text += &stream.finish()?;
/// assert_eq!(text, "Hello world!");
/// # Ok::<(), llama2::tokenizer::TokenizerError>(())
/// ```
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    state: StreamState,
}

#[derive(Debug)]
enum StreamState {
    /// SentencePiece decoding, incremental by construction.
    SentencePiece(DecodeState),
    /// Decoding delegated to a `tokenizer.json` decoder: the whole sequence is
    /// decoded again after every id and the new suffix is returned once it no
    /// longer ends in an incomplete character.
    Redecode { ids: Vec<u32>, emitted: String },
}

impl<'a> StreamDecoder<'a> {
    /// A decoder at the start of a sequence.
    pub fn new(tokenizer: &'a Tokenizer) -> Self {
        let state = match tokenizer.decoding() {
            Decoding::SentencePiece => StreamState::SentencePiece(DecodeState::default()),
            Decoding::Hf => StreamState::Redecode {
                ids: Vec::new(),
                emitted: String::new(),
            },
        };
        Self { tokenizer, state }
    }

    /// Adds the next id and returns the text that is now final.
    ///
    /// Fails on an id outside the vocabulary; the decoder is then unchanged.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let mut out = String::new();
        match &mut self.state {
            StreamState::SentencePiece(state) => {
                state.push(self.tokenizer.pieces(), id, &mut out)?;
            }
            StreamState::Redecode { ids, emitted } => {
                let vocab_size = self.tokenizer.vocab_size();
                if id as usize >= vocab_size {
                    return Err(TokenizerError::IdOutOfRange { id, vocab_size });
                }
                ids.push(id);
                let full = self.tokenizer.decode(ids)?;
                if !full.ends_with(char::REPLACEMENT_CHARACTER)
                    && let Some(new) = full.strip_prefix(emitted.as_str())
                {
                    out.push_str(new);
                    *emitted = full;
                }
            }
        }
        Ok(out)
    }

    /// Whether text is held back waiting for more ids (an incomplete UTF-8
    /// character from byte-fallback tokens).
    pub fn has_pending(&self) -> bool {
        match &self.state {
            StreamState::SentencePiece(state) => state.has_pending(),
            StreamState::Redecode { ids, emitted } => self
                .tokenizer
                .decode(ids)
                .map(|full| full != *emitted)
                .unwrap_or(false),
        }
    }

    /// Ends the sequence and returns the text still held back (incomplete
    /// byte sequences become U+FFFD per byte).
    pub fn finish(self) -> Result<String> {
        match self.state {
            StreamState::SentencePiece(mut state) => {
                let mut out = String::new();
                state.finish(&mut out);
                Ok(out)
            }
            StreamState::Redecode { ids, emitted } => {
                let full = self.tokenizer.decode(&ids)?;
                let common = full
                    .char_indices()
                    .zip(emitted.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(full.len().min(emitted.len()), |((i, _), _)| i);
                Ok(full[common..].to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::tokenizer::Tokenizer;
    use crate::tokenizer::testdata::{all_cases, byte_id, llama2};

    fn stream_all(tok: &Tokenizer, ids: &[u32]) -> Vec<String> {
        let mut stream = tok.stream_decoder();
        let mut parts: Vec<String> = ids.iter().map(|&id| stream.push(id).unwrap()).collect();
        parts.push(stream.finish().unwrap());
        parts
    }

    #[test]
    fn concatenation_equals_whole_decode_on_all_cases() {
        for (name, tok, cases) in all_cases() {
            let mut n = 0;
            let seqs = cases
                .encode
                .iter()
                .map(|c| c.ids.clone())
                .chain(cases.decode.iter().map(|c| c.ids.clone()));
            for ids in seqs {
                let joined = stream_all(tok, &ids).concat();
                assert_eq!(joined, tok.decode(&ids).unwrap(), "{name}: {ids:?}");
                n += 1;
            }
            assert!(n > 400, "{name}: only {n} sequences");
        }
    }

    #[test]
    fn multibyte_character_is_released_when_complete() {
        let tok = llama2();
        let ids: Vec<u32> = "中".bytes().map(|b| byte_id(tok, b)).collect();
        let mut stream = tok.stream_decoder();
        assert_eq!(stream.push(ids[0]).unwrap(), "");
        assert!(stream.has_pending());
        assert_eq!(stream.push(ids[1]).unwrap(), "");
        assert_eq!(stream.push(ids[2]).unwrap(), "中");
        assert!(!stream.has_pending());
        assert_eq!(stream.finish().unwrap(), "");
    }

    #[test]
    fn truncated_character_is_flushed_as_replacements() {
        let tok = llama2();
        let mut stream = tok.stream_decoder();
        assert_eq!(stream.push(byte_id(tok, 0xE4)).unwrap(), "");
        assert_eq!(stream.push(byte_id(tok, 0xB8)).unwrap(), "");
        // A text piece ends the byte run: both bytes are invalid on their own.
        let hello = tok.encode("hello", false, false).unwrap();
        assert_eq!(stream.push(hello[0]).unwrap(), "\u{FFFD}\u{FFFD} hello");
        let mut stream = tok.stream_decoder();
        stream.push(byte_id(tok, 0xF0)).unwrap();
        assert_eq!(stream.finish().unwrap(), "\u{FFFD}");
    }

    #[test]
    fn leading_space_handling_matches_whole_decode() {
        let tok = llama2();
        let ids = tok.encode("  Hello  world", true, true).unwrap();
        let parts = stream_all(tok, &ids);
        assert_eq!(parts[0], ""); // <s>
        assert_eq!(parts.concat(), "  Hello  world");
        let words = tok.encode("Hello world", false, false).unwrap();
        let parts = stream_all(tok, &words);
        assert_eq!(parts, ["Hello", " world", ""]);
    }

    #[test]
    fn out_of_range_id_is_an_error() {
        let tok = llama2();
        let mut stream = tok.stream_decoder();
        assert!(stream.push(tok.vocab_size() as u32).is_err());
        assert_eq!(
            stream
                .push(tok.encode("hi", false, false).unwrap()[0])
                .unwrap(),
            "hi"
        );
    }
}
