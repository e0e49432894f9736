//! The TracingPolicy parser and validator: any text parses or gives an error that names
//! its file — never a panic or a hang. True when the policy was accepted.
pub fn one(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else { return false };
    match sensor::policy::parse("fuzz.yaml", text) {
        Ok(l) => serde_json::to_string(&l.policy).is_ok(),
        Err(e) => {
            // Located: the file (or the override) it is in, and what is wrong.
            assert!(!e.source_name.is_empty() && !e.message.is_empty(), "an unlocated error: {e:?}");
            false
        }
    }
}
