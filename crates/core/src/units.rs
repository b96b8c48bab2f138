//! How numbers read: sizes and rates, the one way every face (CLI, app, events,
//! notifications) writes them. A foundation module: the config's thresholds and
//! the rules' messages both format with it, so neither has to import the other.

/// A rate as "+96/h", "+1.6/h" or "-3/h".
pub fn per_hour(rate: f64) -> String {
    let sign = if rate < 0.0 { "-" } else { "+" };
    let magnitude = rate.abs();
    if magnitude < 9.95 {
        let text = format!("{magnitude:.1}");
        format!("{sign}{}/h", text.strip_suffix(".0").unwrap_or(&text))
    } else {
        format!("{sign}{magnitude:.0}/h")
    }
}

/// A size as a person reads it: "512 B", "2.1 GiB", "640 MiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else if value < 99.95 {
        let text = format!("{value:.1}");
        format!("{} {}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(2 << 30), "2 GiB");
        assert_eq!(human_bytes(220 << 20), "220 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(per_hour(96.4), "+96/h");
        assert_eq!(per_hour(-3.0), "-3/h");
        assert_eq!(per_hour(1.6), "+1.6/h");
    }
}
