//! Durations (`500ms`, `10s`, `2m`, `1h`) and sizes (`512KiB`, `4MiB`) as written in the config.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as `500ms`, `10s`, `2m` or `1h` (compound forms like `1m30s` work too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub const fn from_secs(s: u64) -> Self {
        Dur(Duration::from_secs(s))
    }
    pub const fn from_millis(ms: u64) -> Self {
        Dur(Duration::from_millis(ms))
    }
}

impl From<Dur> for Duration {
    fn from(d: Dur) -> Duration {
        d.0
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

/// The longest duration a config may write: beyond any sensible setting, and far from
/// overflowing an instant (the data plane adds timeouts to the current one).
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// What a duration field takes, in the words of every message about one.
pub(crate) const DURATION: &str = "a duration such as 500ms, 10s, 2m or 1h";

/// Parses a duration the way the config writes it.
pub(crate) fn parse_duration(s: &str) -> Result<Dur, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|_| {
        let unitless = s.trim().parse::<f64>().is_ok();
        let hint = match unitless {
            true => format!(" (a number needs its unit: `{}s`)", s.trim()),
            false => String::new(),
        };
        format!("expected {DURATION}, got `{s}`{hint}")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "expected a duration of at most 100 years, got `{s}`"
        ));
    }
    Ok(Dur(d))
}

/// Deserializes a string through `parse`, failing inside the visitor so the YAML parser
/// marks the value's own line (an error raised after `String::deserialize` returns would
/// be marked at the enclosing mapping).
pub(crate) fn from_str_with<'de, D, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct V<T> {
        expecting: &'static str,
        parse: fn(&str) -> Result<T, String>,
    }
    impl<T> serde::de::Visitor<'_> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(v).map_err(E::custom)
        }
    }
    d.deserialize_str(V { expecting, parse })
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_str_with(d, DURATION, parse_duration)
    }
}

/// A size in bytes written as `512KiB`, `4MiB`, `1GiB`, `64kB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as a `usize` for buffer limits.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        for (n, unit) in UNITS {
            if self.0 >= n && self.0 % n == 0 {
                return write!(f, "{}{unit}", self.0 / n);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// What a size field takes, in the words of every message about one.
const SIZE: &str = "a size such as 512KiB, 4MiB or a number of bytes";

pub(crate) fn parse_size(s: &str) -> Result<ByteSize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .map_err(|_| format!("expected {SIZE}, got `{s}`"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "kB" | "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "expected {SIZE}, got `{s}`: `{other}` is not a unit (B, KiB, MiB, GiB, kB, MB, GB)"
            ))
        }
    };
    Ok(ByteSize((num * mult as f64).round() as u64))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(SIZE)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ByteSize, E> {
                parse_size(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_the_spec_writes_them() {
        assert_eq!(
            parse_duration("500ms").unwrap().0,
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("10s").unwrap().0, Duration::from_secs(10));
        assert_eq!(parse_duration("2m").unwrap().0, Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap().0, Duration::from_secs(3600));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn sizes_as_the_spec_writes_them() {
        assert_eq!(parse_size("512KiB").unwrap().0, 512 * 1024);
        assert_eq!(parse_size("4MiB").unwrap().0, 4 << 20);
        assert_eq!(parse_size("1.5MiB").unwrap().0, 3 << 19);
        assert_eq!(parse_size("100").unwrap().0, 100);
        assert!(parse_size("4 parsecs").is_err());
        assert_eq!(ByteSize(4 << 20).to_string(), "4MiB");
    }
}
