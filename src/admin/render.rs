//! How `rockshard admin` shows what it found to people: aligned tables (numbers
//! right-aligned), permissions as `rw+inherit`, times as ISO 8601, bytes as hex, and the
//! wire names of RocketMQ's enums.
//!
//! Invariants: output is plain text, one table row per line, no trailing spaces, so it
//! diffs and greps well; the JSON form (`--json`) is built by each command, not here.
//!
//! Deliberately not here: asking brokers anything (`client.rs`) and reading times
//! (`time.rs`).

use std::fmt::Write as _;

use rockshard_net::code::perm;
use serde_json::Value;

use super::time::format_time;

pub(super) fn perm_text(bits: i32) -> String {
    let mut s = String::new();
    if bits & perm::READ != 0 {
        s.push('r');
    }
    if bits & perm::WRITE != 0 {
        s.push('w');
    }
    if s.is_empty() {
        s.push('-');
    }
    if bits & perm::INHERIT != 0 {
        s.push_str("+inherit");
    }
    s
}

/// The wire name of one of the body enums (`CONSUME_PASSIVELY`, `CLUSTERING`).
pub(super) fn enum_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A table whose columns line up; numbers right-aligned.
pub(super) struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(super) fn new(headers: &[&str]) -> Table {
        Table { headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    pub(super) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(super) fn render(&self) -> String {
        let columns = self.headers.len();
        let width = |i: usize| {
            self.rows
                .iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&self.headers[i]))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let numeric: Vec<bool> = (0..columns)
            .map(|i| {
                !self.rows.is_empty()
                    && self.rows.iter().all(|r| r.get(i).is_some_and(|c| c.parse::<i64>().is_ok() || c == "-"))
            })
            .collect();
        let mut out = String::new();
        let mut line = |cells: &[String]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate().take(columns) {
                let pad = widths[i].saturating_sub(cell.chars().count());
                let last = i + 1 == columns;
                if numeric[i] {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(cell);
                } else {
                    l.push_str(cell);
                    if !last {
                        l.push_str(&" ".repeat(pad));
                    }
                }
                if !last {
                    l.push_str("  ");
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        line(&self.headers);
        for r in &self.rows {
            line(r);
        }
        out
    }
}

pub(super) fn time_or_dash(ms: i64) -> String {
    if ms <= 0 {
        "-".into()
    } else {
        format_time(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_right_align_numbers() {
        let mut t = Table::new(&["TOPIC", "QUEUES", "FLUSH"]);
        t.row(vec!["orders".into(), "16".into(), "sync".into()]);
        t.row(vec!["a".into(), "4".into(), "async".into()]);
        assert_eq!(t.render(), "TOPIC   QUEUES  FLUSH\norders      16  sync\na            4  async\n");
        assert_eq!(perm_text(6), "rw");
        assert_eq!(perm_text(7), "rw+inherit");
        assert_eq!(perm_text(0), "-");
    }
}
