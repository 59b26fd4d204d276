//! JSON patch (RFC 6902) documents as the reference accepts them, applied
//! with the `json-patch` crate, and its failures named the way the
//! reference's JavaScript patch library names them.

use json_patch::{PatchErrorKind, PatchOperation};
use serde::Deserialize;
use serde_json::Value;

/// The class of a patch failure; [`PatchFailureKind::name`] is the `name`
/// the reference puts on the error object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchFailureKind {
    /// The document is not a valid patch (unknown `op`, missing field, not
    /// an array or object).
    Invalid,
    /// An operation does not apply (missing path, bad index, ...).
    Conflict,
    /// A `test` operation did not match.
    TestFailed,
}

impl PatchFailureKind {
    /// The reference's error name: `InvalidPatch`, `PatchConflictError` or
    /// `PatchTestFailed`.
    pub fn name(self) -> &'static str {
        match self {
            PatchFailureKind::Invalid => "InvalidPatch",
            PatchFailureKind::Conflict => "PatchConflictError",
            PatchFailureKind::TestFailed => "PatchTestFailed",
        }
    }
}

/// A patch that could not be parsed or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatchFailure {
    /// Which kind of failure.
    pub kind: PatchFailureKind,
    /// Human-readable message.
    pub message: String,
}

impl PatchFailure {
    fn invalid(message: impl Into<String>) -> Self {
        PatchFailure {
            kind: PatchFailureKind::Invalid,
            message: message.into(),
        }
    }

    /// Maps an application error of the `json-patch` crate.
    pub(crate) fn from_apply(e: &json_patch::PatchError) -> Self {
        match e.kind {
            PatchErrorKind::TestFailed => PatchFailure {
                kind: PatchFailureKind::TestFailed,
                message: String::from("Patch test failed"),
            },
            _ => PatchFailure {
                kind: PatchFailureKind::Conflict,
                message: e.to_string(),
            },
        }
    }
}

/// The operations of a patch document: an array of operations, or (as the
/// reference also accepts) a single operation object.
pub fn parse_patch(doc: &Value) -> Result<Vec<PatchOperation>, PatchFailure> {
    match doc {
        Value::Array(items) => items.iter().map(parse_op).collect(),
        Value::Object(_) => parse_op(doc).map(|op| vec![op]),
        _ => Err(PatchFailure::invalid(
            "patch must be an array of operations or one operation object",
        )),
    }
}

const KNOWN_OPS: [&str; 6] = ["add", "remove", "replace", "move", "copy", "test"];

fn parse_op(v: &Value) -> Result<PatchOperation, PatchFailure> {
    if let Some(op) = v.get("op") {
        match op.as_str() {
            Some(name) if KNOWN_OPS.contains(&name) => {}
            // The reference's message for an unknown operation.
            Some(name) => return Err(PatchFailure::invalid(format!("invalid operation: {name}"))),
            None => return Err(PatchFailure::invalid(format!("invalid operation: {op}"))),
        }
    }
    PatchOperation::deserialize(v).map_err(|e| PatchFailure::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_arrays_and_single_objects() {
        assert_eq!(parse_patch(&json!([])).map(|p| p.len()), Ok(0));
        let ops = parse_patch(
            &json!([{"op":"replace","path":"/n","value":2},{"op":"add","path":"/t","value":[1]}]),
        );
        assert_eq!(ops.map(|p| p.len()), Ok(2));
        let single = parse_patch(&json!({"op":"replace","path":"/n","value":3}));
        assert_eq!(single.map(|p| p.len()), Ok(1));
    }

    #[test]
    fn names_invalid_patches_like_the_reference() {
        let e = parse_patch(&json!([{"op":"bogus","path":"/n"}])).unwrap_err();
        assert_eq!(e.kind.name(), "InvalidPatch");
        assert_eq!(e.message, "invalid operation: bogus");
        for bad in [
            json!(5),
            json!("x"),
            json!([{"path":"/n"}]),
            json!([{"op":"add"}]),
            json!([1]),
        ] {
            let e = parse_patch(&bad).unwrap_err();
            assert_eq!(e.kind, PatchFailureKind::Invalid, "{bad}");
        }
    }
}
