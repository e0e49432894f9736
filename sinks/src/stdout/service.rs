//! Where the lines go: the process's stdout, or a writer (tests, embedding).
use std::io::Write;

pub enum Out {
    Stdout,
    Writer(Box<dyn Write + Send>),
}

impl Out {
    /// Writes and flushes the whole buffer (blocks while the pipe is full).
    pub fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Writer(out) => out.write_all(buf).and_then(|_| out.flush()),
            Out::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(buf).and_then(|_| out.flush())
            }
        }
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Writer(out) => out.flush(),
            Out::Stdout => std::io::stdout().flush(),
        }
    }
}
