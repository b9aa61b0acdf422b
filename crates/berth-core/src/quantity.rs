//! Resource quantities in Kubernetes notation: CPU (`500m`, `2`) and memory (`256Mi`, `1G`).

/// Parses a CPU quantity into millicores: `"500m"` is 500, `"2"` is 2000, `"0.5"` is 500.
pub fn parse_cpu(s: &str) -> Option<u64> {
    if let Some(m) = s.strip_suffix('m') {
        return m.parse::<u64>().ok().filter(|v| *v > 0);
    }
    let cores: f64 = s.parse().ok()?;
    if !(cores.is_finite() && cores > 0.0 && cores <= 1024.0) {
        return None;
    }
    // Rounding to a whole millicore is what Kubernetes does too.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let millis = (cores * 1000.0).round() as u64;
    (millis > 0).then_some(millis)
}

/// Parses a memory quantity into bytes: `"256Mi"`, `"1Gi"`, `"500M"`, `"1048576"`.
pub fn parse_memory(s: &str) -> Option<u64> {
    const UNITS: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (digits, factor) = UNITS
        .iter()
        .find_map(|(suffix, f)| s.strip_suffix(suffix).map(|d| (d, *f)))
        .unwrap_or((s, 1));
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(factor).filter(|b| *b > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu() {
        assert_eq!(parse_cpu("500m"), Some(500));
        assert_eq!(parse_cpu("2"), Some(2000));
        assert_eq!(parse_cpu("0.25"), Some(250));
        for bad in ["", "m", "-1", "0", "abc", "1.5x", "NaN"] {
            assert_eq!(parse_cpu(bad), None, "{bad}");
        }
    }

    #[test]
    fn memory() {
        assert_eq!(parse_memory("256Mi"), Some(256 << 20));
        assert_eq!(parse_memory("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory("4096"), Some(4096));
        for bad in ["", "Mi", "-5Mi", "1.5Gi", "0", "12XB"] {
            assert_eq!(parse_memory(bad), None, "{bad}");
        }
    }
}
