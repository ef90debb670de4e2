//! Reading `/metrics` text in tests: a series by its name and some of its labels.

/// The values of the series of metric `name` on `/metrics` text that carry every label
/// in `labels` (other labels may be there too, in any order).
pub fn series(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let (metric, rest) = head.split_once('{').unwrap_or((head, "}"));
            if metric != name {
                return None;
            }
            let have = parse_labels(rest.strip_suffix('}')?);
            let all = labels
                .iter()
                .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v));
            all.then(|| value.parse().ok()).flatten()
        })
        .collect()
}

/// `a="1",b="x\"y"` as (name, value) pairs, escapes undone.
pub fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((name.trim_start_matches(',').trim().to_string(), value));
        rest = &after[end..];
    }
    out
}
