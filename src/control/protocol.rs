//! The control socket's wire protocol: one JSON request per line, one JSON response per
//! line. Self-contained (serde and tokio only) so that the fuzz target can include it.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest request line: a policy of the largest size a file may have
/// (`pipeline::config::MAX_FILE_BYTES`, 1 MiB) fits JSON-escaped (YAML has no raw control
/// characters, so escaping at most doubles it).
pub const MAX_LINE: usize = 3 << 20;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    Status,
    PolicyAdd {
        source: String,
        yaml: String,
    },
    PolicyDelete {
        name: String,
    },
    PolicyList,
    /// Stream every event as a JSON line until the client hangs up.
    Subscribe,
}

/// A line of a Subscribe stream that is a notice for the user, not an event.
pub const NOTICE_PREFIX: &str = "#nightjar: ";

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
}

impl Response {
    pub fn ok(result: impl Serialize) -> Self {
        Response { ok: true, error: None, result: serde_json::to_value(result).unwrap_or(Value::Null) }
    }
    pub fn err(e: impl ToString) -> Self {
        Response { ok: false, error: Some(e.to_string()), result: Value::Null }
    }
    /// The response as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut out = serde_json::to_string(self).unwrap_or_else(|_| r#"{"ok":false}"#.to_owned());
        out.push('\n');
        out
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    /// More than `max` bytes without a newline: the connection is closed.
    TooLong {
        max: usize,
    },
    Io(std::io::ErrorKind),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::TooLong { max } => write!(f, "request line longer than {max} bytes"),
            LineError::Io(k) => write!(f, "read failed: {k}"),
        }
    }
}

/// Reads one line (without its newline) into `line`, never holding more than `max` bytes.
/// `Ok(false)`: the peer closed the connection before sending anything more.
pub async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, line: &mut Vec<u8>, max: usize) -> Result<bool, LineError> {
    line.clear();
    loop {
        let buf = r.fill_buf().await.map_err(|e| LineError::Io(e.kind()))?;
        if buf.is_empty() {
            // End of stream: a last line without a newline still counts.
            return Ok(!line.is_empty());
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if line.len() + chunk.len() > max {
            return Err(LineError::TooLong { max });
        }
        line.extend_from_slice(chunk);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            return Ok(true);
        }
    }
}

/// Decodes a request line.
pub fn decode(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(line).map_err(|e| format!("bad request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, LineError>> {
        let mut r = tokio::io::BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            match read_line(&mut r, &mut line, max).await {
                Ok(true) => out.push(Ok(line.clone())),
                Ok(false) => return out,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_capped() {
        let got = lines(b"{\"cmd\":\"status\"}\nabc\nlast", 64).await;
        assert_eq!(got, vec![Ok(b"{\"cmd\":\"status\"}".to_vec()), Ok(b"abc".to_vec()), Ok(b"last".to_vec())]);
        assert!(matches!(decode(b"{\"cmd\":\"status\"}"), Ok(Request::Status)));
        let got = lines(&[b'x'; 100], 64).await;
        assert_eq!(got, vec![Err(LineError::TooLong { max: 64 })]);
        // Exactly at the cap is fine.
        let got = lines(&[b'y'; 64], 64).await;
        assert_eq!(got, vec![Ok(vec![b'y'; 64])]);
    }
}
