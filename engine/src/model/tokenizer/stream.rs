//! Incremental detokenization for streaming output.
//!
//! Decoding one token at a time is wrong twice over: a byte-level token can
//! hold half of a UTF-8 character, and SentencePiece decoders treat the first
//! token of a text differently (the leading space). So each step decodes a
//! short window of recent ids twice, once without the new tokens (the part
//! already shown) and once with them, and emits the difference once it no
//! longer ends in U+FFFD (an unfinished character).

use super::{Tokenizer, TokenizerError};

const REPLACEMENT: char = '\u{FFFD}';

/// Built by [`Tokenizer::stream`]; each call takes the tokenizer it was
/// built from, so a stream can live beside it (a served sequence, say)
/// without borrowing it.
#[derive(Debug)]
pub struct TokenStream {
    skip_special: bool,
    ids: Vec<u32>,
    /// Start of the window: ids before it are never decoded again.
    prefix_offset: usize,
    /// Ids before this have had their text emitted.
    read_offset: usize,
}

impl TokenStream {
    pub(super) fn new(skip_special: bool) -> Self {
        Self {
            skip_special,
            ids: Vec::new(),
            prefix_offset: 0,
            read_offset: 0,
        }
    }

    /// Adds one id; returns the text it completes, if any.
    pub fn push(
        &mut self,
        tokenizer: &Tokenizer,
        id: u32,
    ) -> Result<Option<String>, TokenizerError> {
        tokenizer.check_id(id)?;
        self.ids.push(id);
        self.emit(tokenizer, false)
    }

    /// Text still held back (an unfinished character at the very end),
    /// flushed as it is.
    pub fn finish(mut self, tokenizer: &Tokenizer) -> Result<Option<String>, TokenizerError> {
        self.emit(tokenizer, true)
    }

    fn emit(
        &mut self,
        tokenizer: &Tokenizer,
        force: bool,
    ) -> Result<Option<String>, TokenizerError> {
        let shown = self.decode(tokenizer, self.prefix_offset, self.read_offset)?;
        let full = self.decode(tokenizer, self.prefix_offset, self.ids.len())?;
        if full.len() <= shown.len() || (!force && full.ends_with(REPLACEMENT)) {
            return Ok(None);
        }
        let new_text = match full.strip_prefix(shown.as_str()) {
            Some(rest) => rest.to_string(),
            // A decoder rewrote earlier text; emit from where they part.
            None => {
                let common = shown
                    .char_indices()
                    .zip(full.chars())
                    .find(|((_, a), b)| a != b)
                    .map_or(shown.len(), |((i, _), _)| i);
                full[common..].to_string()
            }
        };
        // Slide the window, unless its text would be empty: a window that
        // decodes to nothing (say a lone '▁' a decoder strips) gives the next
        // step no context and would lose that space.
        if !self
            .decode(tokenizer, self.read_offset, self.ids.len())?
            .is_empty()
        {
            self.prefix_offset = self.read_offset;
            self.ids.drain(..self.prefix_offset);
            self.prefix_offset = 0;
        }
        self.read_offset = self.ids.len();
        Ok(Some(new_text))
    }

    fn decode(
        &self,
        tokenizer: &Tokenizer,
        from: usize,
        to: usize,
    ) -> Result<String, TokenizerError> {
        tokenizer.decode(&self.ids[from..to], self.skip_special)
    }
}
