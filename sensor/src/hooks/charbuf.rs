//! Buffers as policy arguments, user side of `sensor-bpf/src/charbuf.rs`: a `char_buf` is
//! exported as Tetragon does, `bytes_arg` (base64 in JSON), or `truncated_bytes_arg`
//! (`bytes_arg` and `orig_size`) when the buffer was longer than what the kernel copied.
use nightjar_event::event::ArgValue;
use serde_json::json;

/// The exported value of a char_buf record: the size word, then the bytes read.
pub fn decode(data: &[u8]) -> ArgValue {
    let size = data.get(..8).map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8]))).unwrap_or(0);
    let bytes = data.get(8..).unwrap_or_default();
    if size > bytes.len() as u64 {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        return ArgValue::Other {
            key: "truncated_bytes_arg".into(),
            value: json!({"bytes_arg": b64, "orig_size": size.to_string()}),
        };
    }
    ArgValue::Bytes(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_truncated_buffers() {
        let mut d = 3u64.to_ne_bytes().to_vec();
        d.extend_from_slice(b"abc");
        assert_eq!(decode(&d), ArgValue::Bytes(b"abc".to_vec()));
        let mut d = 5000u64.to_ne_bytes().to_vec();
        d.extend_from_slice(b"ab");
        assert_eq!(
            decode(&d),
            ArgValue::Other {
                key: "truncated_bytes_arg".into(),
                value: json!({"bytes_arg": "YWI=", "orig_size": "5000"})
            }
        );
    }
}
