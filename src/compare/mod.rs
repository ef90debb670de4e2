//! TEMPORARY STUB: replaced by the comparator module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Auto,
    V2,
    V1,
    Json,
    Bytes,
}
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub protocol: Protocol,
    pub ignore: Vec<String>,
    pub abs_tolerance: f64,
    pub rel_tolerance: f64,
    pub redact: Vec<String>,
}
impl Rules {
    pub fn new(
        protocol: Protocol,
        ignore: Vec<String>,
        abs_tolerance: f64,
        rel_tolerance: f64,
        redact: Vec<String>,
    ) -> Result<Rules, String> {
        Ok(Rules {
            protocol,
            ignore,
            abs_tolerance,
            rel_tolerance,
            redact,
        })
    }
}
pub struct Response<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    pub truncated: bool,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Agree,
    Disagree,
    Incomparable,
}
impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Agree => "agree",
            Outcome::Disagree => "disagree",
            Outcome::Incomparable => "incomparable",
        }
    }
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub outcome: Outcome,
    pub protocol: Protocol,
    pub reason: Option<String>,
    pub differences: Vec<Difference>,
    pub differences_total: usize,
    pub outputs: Vec<OutputReport>,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct Difference {
    pub path: String,
    pub live: String,
    pub shadow: String,
    pub what: String,
}
#[derive(Debug, Clone, serde::Serialize)]
pub struct OutputReport {
    pub name: String,
    pub agree: bool,
}
pub fn compare(_rules: &Rules, live: &Response<'_>, shadow: &Response<'_>) -> Comparison {
    let outcome = if live.status != shadow.status || live.truncated || shadow.truncated {
        Outcome::Incomparable
    } else if live.body == shadow.body {
        Outcome::Agree
    } else {
        Outcome::Disagree
    };
    Comparison {
        outcome,
        protocol: Protocol::Bytes,
        reason: None,
        differences: vec![],
        differences_total: 0,
        outputs: vec![],
    }
}
pub fn redact(_rules: &Rules, body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}
