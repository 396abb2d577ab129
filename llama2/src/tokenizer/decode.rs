//! SentencePiece decoding (`SentencePieceProcessor::Decode`) as an
//! incremental state machine.
//!
//! Rules, per id:
//! * control pieces (`<s>`, `</s>`) produce nothing;
//! * the unknown piece produces the unknown surface (`" ⁇ "`);
//! * runs of byte pieces are joined and read as UTF-8; every byte that does
//!   not start a valid UTF-8 sequence produces one U+FFFD;
//! * other pieces produce their text with `▁` replaced by a space, except that
//!   while nothing has been produced yet (only control pieces or no pieces
//!   before), one leading `▁` is dropped — the dummy prefix added by encoding.
//!   Once such a `▁` has been dropped, or any text produced, no further `▁`
//!   is dropped.
//!
//! [`DecodeState`] applies these rules one id at a time and writes text as
//! soon as it is final, so the same code serves whole-sequence decoding and
//! streaming, and both give identical text.

use super::error::{Result, TokenizerError};
use super::pieces::{PieceKind, PieceTable, SPACE_SYMBOL};

/// Incremental SentencePiece decoder state.
#[derive(Clone, Debug)]
pub(crate) struct DecodeState {
    /// Bytes of pending byte pieces not yet written.
    pending: Vec<u8>,
    /// Whether the next text piece may still lose a leading `▁`.
    is_bos_ws: bool,
    /// Whether the previous text piece lost its leading `▁`.
    bos_ws_seen: bool,
    /// Whether any text has been written.
    wrote_text: bool,
}

impl Default for DecodeState {
    fn default() -> Self {
        Self {
            pending: Vec::new(),
            is_bos_ws: true,
            bos_ws_seen: false,
            wrote_text: false,
        }
    }
}

impl DecodeState {
    /// Feeds one id, appending whatever text became final to `out`.
    pub(crate) fn push(&mut self, table: &PieceTable, id: u32, out: &mut String) -> Result<()> {
        let kind = table.kind(id).ok_or(TokenizerError::IdOutOfRange {
            id,
            vocab_size: table.len(),
        })?;
        if let PieceKind::Byte(b) = kind {
            self.pending.push(b);
            self.drain_bytes(out, false);
            return Ok(());
        }
        self.drain_bytes(out, true);
        if self.bos_ws_seen || self.wrote_text {
            self.is_bos_ws = false;
        }
        let start = out.len();
        self.bos_ws_seen = false;
        match kind {
            PieceKind::Control => {}
            PieceKind::Unknown => out.push_str(&table.unk_surface),
            _ => {
                let mut piece = table.piece(id).unwrap_or_default();
                if self.is_bos_ws
                    && table.strip_dummy_prefix
                    && let Some(rest) = piece.strip_prefix(SPACE_SYMBOL)
                {
                    piece = rest;
                    self.bos_ws_seen = true;
                }
                out.extend(
                    piece
                        .chars()
                        .map(|c| if c == SPACE_SYMBOL { ' ' } else { c }),
                );
            }
        }
        self.wrote_text |= out.len() > start;
        Ok(())
    }

    /// Writes out pending bytes at the end of the sequence.
    pub(crate) fn finish(&mut self, out: &mut String) {
        self.drain_bytes(out, true);
    }

    /// Whether bytes of an incomplete UTF-8 sequence are held back.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes every pending character whose decoding can no longer change.
    /// With `last`, the byte run is complete and everything is written.
    fn drain_bytes(&mut self, out: &mut String, last: bool) {
        let mut offset = 0;
        while offset < self.pending.len() {
            match utf8_prefix(&self.pending[offset..], last) {
                Utf8Prefix::Char(c, len) => {
                    out.push(c);
                    offset += len;
                }
                Utf8Prefix::Invalid => {
                    out.push(char::REPLACEMENT_CHARACTER);
                    offset += 1;
                }
                Utf8Prefix::Incomplete => break,
            }
        }
        if offset > 0 {
            self.wrote_text = true;
            self.pending.drain(..offset);
        }
    }
}

/// Decodes `ids` completely.
pub(crate) fn decode(table: &PieceTable, ids: &[u32]) -> Result<String> {
    let mut state = DecodeState::default();
    let mut out = String::new();
    for &id in ids {
        state.push(table, id, &mut out)?;
    }
    state.finish(&mut out);
    Ok(out)
}

/// Outcome of reading one character from the front of a byte run.
#[derive(Debug, PartialEq, Eq)]
enum Utf8Prefix {
    /// A valid character of the given encoded length.
    Char(char, usize),
    /// The first byte does not start a valid character: it becomes U+FFFD.
    Invalid,
    /// The bytes so far could still become a valid character.
    Incomplete,
}

/// Reads one character from the front of `bytes` the way SentencePiece's
/// `DecodeUTF8` does: a valid (non-overlong, non-surrogate, <= U+10FFFF)
/// sequence is one character, anything else consumes exactly one byte.
/// Unless `last`, a truncated but so far valid sequence is `Incomplete`.
fn utf8_prefix(bytes: &[u8], last: bool) -> Utf8Prefix {
    let b0 = bytes[0];
    let (len, init, min) = match b0 {
        0x00..=0x7F => return Utf8Prefix::Char(b0 as char, 1),
        _ if b0 & 0xE0 == 0xC0 => (2, u32::from(b0 & 0x1F), 0x80),
        _ if b0 & 0xF0 == 0xE0 => (3, u32::from(b0 & 0x0F), 0x800),
        _ if b0 & 0xF8 == 0xF0 => (4, u32::from(b0 & 0x07), 0x1_0000),
        _ => return Utf8Prefix::Invalid,
    };
    let avail = &bytes[1..bytes.len().min(len)];
    if avail.iter().any(|&b| b & 0xC0 != 0x80) {
        return Utf8Prefix::Invalid;
    }
    if bytes.len() < len {
        return if last {
            Utf8Prefix::Invalid
        } else {
            Utf8Prefix::Incomplete
        };
    }
    let cp = avail
        .iter()
        .fold(init, |cp, &b| (cp << 6) | u32::from(b & 0x3F));
    match char::from_u32(cp) {
        Some(c) if cp >= min => Utf8Prefix::Char(c, len),
        _ => Utf8Prefix::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lossy_sp(bytes: &[u8]) -> String {
        let mut out = String::new();
        let mut state = DecodeState {
            pending: bytes.to_vec(),
            ..DecodeState::default()
        };
        state.finish(&mut out);
        out
    }

    #[test]
    fn utf8_reader_matches_std_on_valid_text() {
        for s in ["a", "é", "中", "😀", "\u{10FFFF}", "\u{FFFD}", "\0"] {
            let c = s.chars().next().unwrap();
            assert_eq!(
                utf8_prefix(s.as_bytes(), true),
                Utf8Prefix::Char(c, s.len())
            );
            assert_eq!(lossy_sp(s.as_bytes()), s);
        }
    }

    #[test]
    fn invalid_bytes_become_one_replacement_each() {
        let r = "\u{FFFD}";
        assert_eq!(lossy_sp(&[0xE4, 0xB8]), r.repeat(2));
        assert_eq!(lossy_sp(&[0xC0, 0x80]), r.repeat(2)); // overlong
        assert_eq!(lossy_sp(&[0xED, 0xA0, 0x80]), r.repeat(3)); // surrogate
        assert_eq!(lossy_sp(&[0xF4, 0x90, 0x80, 0x80]), r.repeat(4)); // > U+10FFFF
        assert_eq!(lossy_sp(&[0xFF, 0x41]), format!("{r}A"));
        assert_eq!(
            lossy_sp(&[0xF0, 0x9F, 0x98, 0x41]),
            format!("{}A", r.repeat(3))
        );
    }

    #[test]
    fn incomplete_sequences_wait_unless_last() {
        assert_eq!(utf8_prefix(&[0xE4, 0xB8], false), Utf8Prefix::Incomplete);
        assert_eq!(utf8_prefix(&[0xE4, 0x41], false), Utf8Prefix::Invalid);
        assert_eq!(utf8_prefix(&[0xE4, 0xB8], true), Utf8Prefix::Invalid);
        assert_eq!(utf8_prefix(&[0x80], false), Utf8Prefix::Invalid);
    }
}
