//! Splits a byte stream into lines, whole lines only. A line longer than `max` is skipped
//! whole — its head and its tail — and reported once, however long it is. Pure and
//! fuzzable: bytes in, lines and skips out, with the byte offsets they end at.

/// What the reader found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// A complete line (without its newline) and the offset just after its newline.
    Line { text: &'a [u8], start: u64, end: u64 },
    /// A line longer than the limit, skipped whole; `end` is after its newline.
    TooLong { start: u64, end: u64 },
}

#[derive(Debug)]
pub struct LineReader {
    max: usize,
    /// Bytes of the current, unfinished line.
    pending: Vec<u8>,
    /// Offset of the first byte of the current line.
    line_start: u64,
    /// Offset of the next byte to come.
    offset: u64,
    /// Inside a line that was already too long: drop bytes up to its newline.
    skipping: bool,
}

impl LineReader {
    pub fn new(max: usize, offset: u64) -> Self {
        LineReader { max: max.max(1), pending: Vec::new(), line_start: offset, offset, skipping: false }
    }

    /// Offset just after the last complete line (or skipped one): where a restart resumes.
    pub fn consumed(&self) -> u64 {
        self.line_start
    }

    /// Offset of the next byte to feed (where reading goes on).
    pub fn next_offset(&self) -> u64 {
        self.offset
    }

    /// Starts again at `offset` (the file was truncated), forgetting any partial line.
    pub fn reset(&mut self, offset: u64) {
        *self = LineReader::new(self.max, offset);
    }

    /// Feeds `chunk`; calls `f` for each line completed and each over-long line, once.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(Item<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let nl = rest.iter().position(|&b| b == b'\n');
            let (part, after) = match nl {
                Some(i) => (&rest[..i], Some(&rest[i + 1..])),
                None => (rest, None),
            };
            self.offset += part.len() as u64;
            if !self.skipping {
                if self.pending.len() + part.len() > self.max {
                    self.skipping = true;
                    self.pending.clear();
                    // Reported when it ends (below), so it is counted once, and not at all
                    // if the file is cut before its newline comes (nothing was consumed).
                } else if after.is_some() && self.pending.is_empty() {
                    // The common case: a whole line inside the chunk, no copy.
                    self.offset += 1;
                    let (start, end) = (self.line_start, self.offset);
                    self.line_start = end;
                    f(Item::Line { text: part, start, end });
                    rest = after.unwrap_or_default();
                    continue;
                } else {
                    self.pending.extend_from_slice(part);
                }
            }
            let Some(after) = after else { break };
            self.offset += 1;
            let (start, end) = (self.line_start, self.offset);
            self.line_start = end;
            if self.skipping {
                self.skipping = false;
                f(Item::TooLong { start, end });
            } else {
                let line = std::mem::take(&mut self.pending);
                f(Item::Line { text: &line, start, end });
                self.pending = line;
                self.pending.clear();
            }
            rest = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(max: usize, chunks: &[&[u8]]) -> Vec<(Option<Vec<u8>>, u64, u64)> {
        let mut r = LineReader::new(max, 0);
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, |i| match i {
                Item::Line { text, start, end } => out.push((Some(text.to_vec()), start, end)),
                Item::TooLong { start, end } => out.push((None, start, end)),
            });
        }
        out
    }

    #[test]
    fn an_over_long_line_is_skipped_whole_and_reported_once() {
        // 3 chunks of one 30-byte line whose tail alone would be valid JSON, then a line.
        let got = run(10, &[b"aaaaaaaaaaaaaaaaaaa", b"a{\"x\":1}", b"}\n{\"ok\":1}\n"]);
        assert_eq!(got, vec![(None, 0, 29), (Some(b"{\"ok\":1}".to_vec()), 29, 38)]);
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let got = run(100, &[b"ab", b"c\nde", b"f\n", b"gh"]);
        assert_eq!(got, vec![(Some(b"abc".to_vec()), 0, 4), (Some(b"def".to_vec()), 4, 8)]);
    }

    proptest! {
        /// However the bytes are chunked: lines are exactly the input's lines no longer than
        /// `max`, every longer line is one TooLong, and the offsets tile the input.
        #[test]
        fn chunking_never_changes_what_comes_out(
            lines in proptest::collection::vec("[a-z{}\":]{0,40}", 0..20),
            cuts in proptest::collection::vec(0usize..2000, 0..10),
            max in 1usize..30,
        ) {
            let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
            let bytes = text.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                chunks.push(&bytes[at..c]);
                at = c;
            }
            let got = run(max, &chunks);
            prop_assert_eq!(got.len(), lines.len());
            let mut off = 0u64;
            for (l, (text, start, end)) in lines.iter().zip(&got) {
                prop_assert_eq!(*start, off);
                off += l.len() as u64 + 1;
                prop_assert_eq!(*end, off);
                if l.len() > max {
                    prop_assert!(text.is_none());
                } else {
                    prop_assert_eq!(text.as_deref(), Some(l.as_bytes()));
                }
            }
        }
    }
}
