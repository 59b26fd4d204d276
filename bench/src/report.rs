//! Figures and how they are printed: one line per figure,
//! `name value unit (ratio to baseline)`, or JSON with `--json`.

use serde_json::{json, Value};

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Runtime it was measured on (`smol`, `async-std`), or `-` when the
    /// figure does not depend on one.
    pub runtime: &'static str,
    /// Which figure of BENCHMARKS.md (1–7).
    pub figure: u8,
    /// What was measured.
    pub name: String,
    /// The number.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// What it is compared with, and that baseline's value (same unit
    /// unless the description says otherwise).
    pub baseline: Option<(String, f64)>,
    /// Anything the reader must know to read the number (losses, scope).
    pub note: Option<String>,
}

impl Figure {
    /// `value / baseline`, when there is a baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|(_, b)| *b != 0.0)
            .map(|(_, b)| self.value / b)
    }

    /// The text line.
    pub fn line(&self) -> String {
        let mut s = format!(
            "{:<9} {:<58} {:>12} {:<7}",
            self.runtime,
            self.name,
            fmt_value(self.value),
            self.unit
        );
        if let (Some(r), Some((b, _))) = (self.ratio(), &self.baseline) {
            s.push_str(&format!(" ({r:.2} × {b})"));
        }
        if let Some(n) = &self.note {
            s.push_str(&format!(" [{n}]"));
        }
        s
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "runtime": self.runtime,
            "figure": self.figure,
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline.as_ref().map(|(n, _)| n.clone()),
            "baseline_value": self.baseline.as_ref().map(|(_, v)| *v),
            "ratio": self.ratio(),
            "note": self.note,
        })
    }
}

fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}
