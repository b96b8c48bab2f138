//! Rendering shared by the commands: aligned tables, human sizes and ages, and
//! writing to a stdout that may be a closed pipe (`leakwatch ps | head`).

pub(crate) use leakwatch_core::escape::escape;
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

/// Writes `text` to stdout; a reader that went away early is not an error.
pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Writes `text` to stdout; `false` once the reader went away (a closed pipe, as
/// in `leakwatch watch | head -1`), so a command that prints until stopped stops.
pub(crate) fn print_or_closed(text: &str) -> anyhow::Result<bool> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Pretty JSON with a final newline.
pub(crate) fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// Column alignment for a table; the last column is left free (commands and paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A plain text table: a header row, rows, columns padded to their widest cell.
#[derive(Debug)]
pub(crate) struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(columns: &[(&'static str, Align)]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text. Every cell is escaped ([`escape`]): cells hold other
    /// processes' names, argv and paths, which must not reach a terminal raw.
    pub(crate) fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(|cell| escape(cell).into_owned()).collect())
            .collect();
        let mut widths: Vec<usize> =
            self.columns.iter().map(|(name, _)| name.chars().count()).collect();
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| (*name).to_owned()).collect();
        for row in std::iter::once(&header).chain(&rows) {
            let last = row.len().saturating_sub(1);
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let width = widths.get(i).copied().unwrap_or(0);
                let align = self.columns.get(i).map_or(Align::Left, |c| c.1);
                let pad = width.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                    Align::Left if i == last => line.push_str(cell),
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// `212 MiB`, `1.5 KiB`: binary units, as everywhere in Leakwatch.
pub(crate) fn bytes(n: u64) -> String {
    leakwatch_core::rules::human_bytes(n)
}

/// `3d 4h`, `2h 5m`, `4m 10s`, `12s`: the two largest units.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// A limit for display: a number or `unlimited`.
pub(crate) fn limit(value: Option<u64>) -> String {
    value.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(220 * 1024 * 1024), "220 MiB");
        assert_eq!(age(Duration::from_secs(12)), "12s");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 3600 * 4 + 5)), "3d 4h");
        assert_eq!(age(Duration::from_secs(7500)), "2h 5m");
    }

    #[test]
    fn table_aligns_columns() {
        let mut table = Table::new(&[("PID", Align::Right), ("NAME", Align::Left)]);
        table.row(vec!["7".into(), "a b".into()]);
        table.row(vec!["12345".into(), "c".into()]);
        assert_eq!(table.render(), "  PID  NAME\n    7  a b\n12345  c\n");
    }
}
