//! A batch of encoded items becomes `_bulk` requests of at most `max_events` items and
//! `max_bytes` bytes, each body gzipped once (a retry resends the same bytes).
use std::{io::Write, sync::Arc};

use bytes::Bytes;

use super::{encoder::Item, service::BulkRequest};

pub struct RequestBuilder {
    pub max_events: usize,
    pub max_bytes: usize,
    pub gzip: bool,
}

impl RequestBuilder {
    /// Requests for `which` (indexes into `items`), in order.
    pub fn build(&self, items: &[Item], which: &[usize]) -> Vec<BulkRequest> {
        let mut out = Vec::new();
        let mut cur: Vec<usize> = Vec::new();
        let mut bytes = 0;
        for &i in which {
            let len = items[i].ndjson.len();
            if !cur.is_empty() && (cur.len() >= self.max_events.max(1) || bytes + len > self.max_bytes.max(1)) {
                out.push(self.one(items, std::mem::take(&mut cur), bytes));
                bytes = 0;
            }
            cur.push(i);
            bytes += len;
        }
        if !cur.is_empty() {
            out.push(self.one(items, cur, bytes));
        }
        out
    }

    fn one(&self, items: &[Item], which: Vec<usize>, bytes: usize) -> BulkRequest {
        let mut raw = Vec::with_capacity(bytes);
        for &i in &which {
            raw.extend_from_slice(&items[i].ndjson);
        }
        let body = if self.gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(bytes / 4), flate2::Compression::fast());
            // Writing into a Vec cannot fail.
            match gz.write_all(&raw).and_then(|_| gz.finish()) {
                Ok(v) => v,
                Err(_) => raw,
            }
        } else {
            raw
        };
        BulkRequest { body: Bytes::from(body), items: Arc::new(which) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize) -> Item {
        Item { id: n.to_string(), index: "i".into(), ndjson: vec![b'x'; 10] }
    }

    #[test]
    fn splits_by_events_and_bytes() {
        let items: Vec<Item> = (0..10).map(item).collect();
        let all: Vec<usize> = (0..10).collect();
        let b = RequestBuilder { max_events: 4, max_bytes: 1 << 20, gzip: false };
        let sizes: Vec<usize> = b.build(&items, &all).iter().map(|r| r.items.len()).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        let b = RequestBuilder { max_events: 100, max_bytes: 25, gzip: true };
        let reqs = b.build(&items, &all);
        assert_eq!(reqs.iter().map(|r| r.items.len()).collect::<Vec<_>>(), vec![2, 2, 2, 2, 2]);
        let mut d = flate2::read::GzDecoder::new(&reqs[0].body[..]);
        let mut s = Vec::new();
        std::io::Read::read_to_end(&mut d, &mut s).unwrap();
        assert_eq!(s.len(), 20);
    }
}
