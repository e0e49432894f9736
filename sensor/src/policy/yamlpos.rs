//! Line and column of every node of a YAML document, by key path
//! (`spec.kprobes[0].selectors[1].matchArgs[0].operator`), so validation errors found after
//! deserializing can still point at the exact line.
use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

#[derive(Debug, Default)]
pub struct Positions {
    map: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map { key: Option<String>, expecting_key: bool },
    Seq { index: usize },
}

struct Collector {
    stack: Vec<(Frame, String)>,
    out: HashMap<String, (usize, usize)>,
}

impl Collector {
    /// Path of the node that starts now, advancing the parent's state.
    fn node_path(&mut self) -> Option<String> {
        let (frame, base) = self.stack.last_mut()?;
        match frame {
            Frame::Map { key, expecting_key } => {
                if *expecting_key {
                    return None; // a key, not a node
                }
                *expecting_key = true;
                let k = key.take().unwrap_or_default();
                Some(if base.is_empty() { k } else { format!("{base}.{k}") })
            }
            Frame::Seq { index } => {
                let p = format!("{base}[{index}]");
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(v, ..) => {
                if let Some((Frame::Map { key, expecting_key }, base)) = self.stack.last_mut() {
                    if *expecting_key {
                        *expecting_key = false;
                        let p = if base.is_empty() { v.clone() } else { format!("{base}.{v}") };
                        self.out.insert(p, pos);
                        *key = Some(v);
                        return;
                    }
                }
                if let Some(p) = self.node_path() {
                    self.out.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                let path = if self.stack.is_empty() { Some(String::new()) } else { self.node_path() };
                let path = path.unwrap_or_default();
                self.out.entry(path.clone()).or_insert(pos);
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { key: None, expecting_key: true }
                } else {
                    Frame::Seq { index: 0 }
                };
                self.stack.push((frame, path));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl Positions {
    /// Indexes `text`; a document that does not parse yields an empty index (the
    /// deserializer reports the syntax error itself).
    pub fn of(text: &str) -> Self {
        let mut c = Collector { stack: Vec::new(), out: HashMap::new() };
        let mut p = Parser::new_from_str(text);
        let _ = p.load(&mut c, false);
        Positions { map: c.out }
    }

    /// Position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut p = path.to_owned();
        loop {
            if let Some(v) = self.map.get(&p) {
                return Some(*v);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_have_lines() {
        let text = "spec:\n  kprobes:\n  - call: a\n    args:\n    - index: 0\n      type: int\n  - call: b\n";
        let p = Positions::of(text);
        assert_eq!(p.find("spec.kprobes[0].call").map(|x| x.0), Some(3));
        assert_eq!(p.find("spec.kprobes[0].args[0].type").map(|x| x.0), Some(6));
        assert_eq!(p.find("spec.kprobes[1].call").map(|x| x.0), Some(7));
        assert_eq!(p.find("spec.kprobes[1].nothere").map(|x| x.0), Some(7));
    }
}
