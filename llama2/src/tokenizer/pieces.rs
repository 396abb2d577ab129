//! The vocabulary as SentencePiece sees it: one piece string and one
//! [`PieceKind`] per id, plus the settings decoding depends on.

/// The SentencePiece marker that stands for a space inside pieces (U+2581).
pub const SPACE_SYMBOL: char = '\u{2581}';

/// Default text `<unk>` decodes to (`" ⁇ "`), as in SentencePiece.
pub const DEFAULT_UNK_SURFACE: &str = " \u{2047} ";

/// Kind of a vocabulary entry (SentencePiece's `ModelProto.SentencePiece.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PieceKind {
    /// Ordinary text piece; `▁` inside it decodes to a space.
    Normal,
    /// The unknown piece; decodes to the unknown surface (`" ⁇ "`).
    Unknown,
    /// Control symbol (`<s>`, `</s>`, ...); decodes to nothing and is never
    /// produced by encoding text.
    Control,
    /// Piece kept whole by the encoder.
    UserDefined,
    /// Piece present in the vocabulary but never produced by encoding.
    Unused,
    /// Byte-fallback piece `<0xXX>` carrying one raw UTF-8 byte.
    Byte(u8),
}

/// Parses a byte-fallback piece of the form `<0xXX>` (two upper-case hex digits).
pub fn parse_byte_piece(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
    {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// The piece string of byte `b` (`<0x0A>` for a newline).
pub fn byte_piece(b: u8) -> String {
    format!("<0x{b:02X}>")
}

/// Pieces, their kinds and the decoding settings of one vocabulary.
#[derive(Clone, Debug)]
pub(crate) struct PieceTable {
    pieces: Vec<String>,
    kinds: Vec<PieceKind>,
    /// Text the unknown piece decodes to.
    pub(crate) unk_surface: String,
    /// Whether decoding drops one leading `▁` of the first piece (the dummy
    /// prefix that encoding added).
    pub(crate) strip_dummy_prefix: bool,
}

impl PieceTable {
    pub(crate) fn new(
        pieces: Vec<String>,
        kinds: Vec<PieceKind>,
        unk_surface: String,
        strip_dummy_prefix: bool,
    ) -> Self {
        debug_assert_eq!(pieces.len(), kinds.len());
        Self {
            pieces,
            kinds,
            unk_surface,
            strip_dummy_prefix,
        }
    }

    /// Number of pieces.
    pub(crate) fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Piece string of `id`.
    pub(crate) fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    /// Kind of `id`.
    pub(crate) fn kind(&self, id: u32) -> Option<PieceKind> {
        self.kinds.get(id as usize).copied()
    }

    /// Ids of all pieces of the given kind predicate, in id order.
    pub(crate) fn ids_where(&self, pred: impl Fn(PieceKind) -> bool) -> Vec<u32> {
        (0..self.kinds.len() as u32)
            .filter(|&id| pred(self.kinds[id as usize]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_pieces_round_trip() {
        for b in 0..=255u8 {
            assert_eq!(parse_byte_piece(&byte_piece(b)), Some(b));
        }
        assert_eq!(byte_piece(10), "<0x0A>");
        for bad in [
            "<0x0a>", "<0x1>", "<0x100>", "0x41", "<0xGG>", "<0x41", "<s>",
        ] {
            assert_eq!(parse_byte_piece(bad), None, "{bad}");
        }
    }
}
