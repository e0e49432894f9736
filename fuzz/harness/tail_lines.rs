//! The tetragon_file source's line reader: any bytes, cut into any chunks, give the same
//! lines as when read whole; no line holds a newline or exceeds the limit; the offsets
//! of lines and skipped lines tile the input; the reader never holds more than the limit.
//! The first two bytes choose the line limit and the chunk size.
use pipeline::sources::tetragon_file::lines::{Item, LineReader};

type Out = Vec<(Option<Vec<u8>>, u64, u64)>;

fn read(max: usize, chunks: impl Iterator<Item = Vec<u8>>) -> (Out, u64, u64) {
    let mut r = LineReader::new(max, 0);
    let mut out = Vec::new();
    for c in chunks {
        r.feed(&c, |i| match i {
            Item::Line { text, start, end } => out.push((Some(text.to_vec()), start, end)),
            Item::TooLong { start, end } => out.push((None, start, end)),
        });
    }
    (out, r.consumed(), r.next_offset())
}

/// True when at least one line came out (an input worth mutating further).
pub fn one(data: &[u8]) -> bool {
    let [a, b, input @ ..] = data else { return false };
    let max = usize::from(*a % 64) + 1;
    let step = usize::from(*b % 17) + 1;
    let (whole, consumed, next) = read(max, std::iter::once(input.to_vec()));
    let chunked = read(max, input.chunks(step).map(<[u8]>::to_vec));
    assert_eq!(chunked, (whole.clone(), consumed, next), "chunks of {step} bytes read differently");
    assert_eq!(next, input.len() as u64, "not every byte was taken");
    let mut at = 0u64;
    for (text, start, end) in &whole {
        assert_eq!(*start, at, "a gap or overlap before the line at {start}");
        assert!(end > start);
        let raw = &input[*start as usize..*end as usize];
        assert_eq!(raw.last(), Some(&b'\n'), "a line that does not end at its newline");
        let body = &raw[..raw.len() - 1];
        assert!(!body.contains(&b'\n'));
        match text {
            Some(t) => assert!(t == body && t.len() <= max),
            None => assert!(body.len() > max, "a line of {} bytes skipped under a limit of {max}", body.len()),
        }
        at = *end;
    }
    assert_eq!(consumed, at, "resumes elsewhere than after the last whole line");
    !whole.is_empty()
}
