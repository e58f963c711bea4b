//! Component and pipeline identifiers: `type[/name]` and `signal[/name]`, as in the OpenTelemetry
//! Collector. The type selects the implementation; the name lets several instances of one type coexist.

use std::fmt;
use std::str::FromStr;

use crate::Signal;

/// `type[/name]`, e.g. `otlp` or `otlp/cloud`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ComponentId {
    kind: String,
    name: Option<String>,
}

impl ComponentId {
    pub fn new(kind: impl Into<String>, name: Option<&str>) -> Self {
        Self {
            kind: kind.into(),
            name: name.map(str::to_owned),
        }
    }
    /// The component type, the part before the slash.
    pub fn kind(&self) -> &str {
        &self.kind
    }
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.kind, n),
            None => f.write_str(&self.kind),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("empty component id (expected type or type/name)")]
    Empty,
    #[error("'{0}': the type before '/' is empty (expected type/name)")]
    EmptyType(String),
    #[error("'{0}': the name after '/' is empty (write just the type, or type/name)")]
    EmptyName(String),
    #[error("'{0}': the type may contain only letters, digits and '_'")]
    BadType(String),
    #[error("'{0}': '{1}' is not a signal (expected traces, metrics or logs)")]
    BadSignal(String, String),
}

fn split_id(s: &str) -> Result<(&str, Option<&str>), IdError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let (kind, name) = match s.split_once('/') {
        Some((k, n)) => (k, Some(n)),
        None => (s, None),
    };
    if kind.is_empty() {
        return Err(IdError::EmptyType(s.to_owned()));
    }
    if name == Some("") {
        return Err(IdError::EmptyName(s.to_owned()));
    }
    Ok((kind, name))
}

impl FromStr for ComponentId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = split_id(s)?;
        if !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(IdError::BadType(s.trim().to_owned()));
        }
        Ok(Self::new(kind, name))
    }
}

impl serde::Serialize for ComponentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ComponentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `signal[/name]`, e.g. `traces` or `metrics/scraped`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PipelineId {
    pub signal: Signal,
    pub name: Option<String>,
}

impl fmt::Display for PipelineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}/{}", self.signal, n),
            None => write!(f, "{}", self.signal),
        }
    }
}

impl FromStr for PipelineId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, name) = split_id(s)?;
        let signal = kind
            .parse::<Signal>()
            .map_err(|_| IdError::BadSignal(s.trim().to_owned(), kind.to_owned()))?;
        Ok(Self {
            signal,
            name: name.map(str::to_owned),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_ids_parse_type_and_name() {
        let id: ComponentId = "otlp/cloud".parse().unwrap();
        assert_eq!(id.kind(), "otlp");
        assert_eq!(id.name(), Some("cloud"));
        assert_eq!(id.to_string(), "otlp/cloud");
        let id: ComponentId = "batch".parse().unwrap();
        assert_eq!(id.name(), None);
        // Names may themselves contain slashes, as upstream allows.
        let id: ComponentId = "otlp/a/b".parse().unwrap();
        assert_eq!(id.name(), Some("a/b"));
    }

    #[test]
    fn bad_component_ids_are_refused() {
        assert_eq!("".parse::<ComponentId>(), Err(IdError::Empty));
        assert!(matches!(
            "/x".parse::<ComponentId>(),
            Err(IdError::EmptyType(_))
        ));
        assert!(matches!(
            "otlp/".parse::<ComponentId>(),
            Err(IdError::EmptyName(_))
        ));
        assert!(matches!(
            "ot lp".parse::<ComponentId>(),
            Err(IdError::BadType(_))
        ));
    }

    #[test]
    fn pipeline_ids_need_a_signal() {
        let id: PipelineId = "metrics/scraped".parse().unwrap();
        assert_eq!(id.signal, Signal::Metrics);
        assert_eq!(id.to_string(), "metrics/scraped");
        assert!(matches!(
            "spans".parse::<PipelineId>(),
            Err(IdError::BadSignal(_, _))
        ));
    }
}
