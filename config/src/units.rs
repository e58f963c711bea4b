//! Value types with a human spelling in YAML: byte sizes (`64MiB`, `2GB`, or a plain integer of bytes)
//! and durations (`200ms`, `5s`, `1h30m`).

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes. Binary suffixes (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB,
/// TB) powers of 1000, as Prometheus and Kubernetes read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let unit = unit.trim();
        let mult: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1000,
            "mb" | "m" => 1000 * 1000,
            "gb" | "g" => 1000 * 1000 * 1000,
            "tb" | "t" => 1000u64.pow(4),
            "kib" | "ki" => 1 << 10,
            "mib" | "mi" => 1 << 20,
            "gib" | "gi" => 1 << 30,
            "tib" | "ti" => 1 << 40,
            _ => {
                return Err(format!(
                "'{s}' is not a byte size (expected e.g. 512KiB, 64MiB, 2GB or a number of bytes)"
            ))
            }
        };
        let value: f64 = num.parse().map_err(|_| {
            format!(
                "'{s}' is not a byte size (expected e.g. 512KiB, 64MiB, 2GB or a number of bytes)"
            )
        })?;
        let bytes = value * mult as f64;
        if !(0.0..=u64::MAX as f64).contains(&bytes) {
            return Err(format!("'{s}' is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u64); 4] = [
            ("TiB", 1 << 40),
            ("GiB", 1 << 30),
            ("MiB", 1 << 20),
            ("KiB", 1 << 10),
        ];
        for (name, size) in UNITS {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{}", self.0 / size, name);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a byte size such as 64MiB or a number of bytes")
        })? {
            Raw::N(n) => Ok(ByteSize(n)),
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A duration written as `200ms`, `5s`, `1m30s` (humantime's grammar).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_any` so a bare number gets its own message: a unit is what is missing.
        d.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl DurationVisitor {
    fn no_unit<E: serde::de::Error>(n: impl fmt::Display) -> E {
        E::custom(format!("'{n}' has no unit; write e.g. {n}ms or {n}s"))
    }
}

impl serde::de::Visitor<'_> for DurationVisitor {
    type Value = HumanDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as 200ms, 5s or 1m")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        humantime::parse_duration(s.trim())
            .map(HumanDuration)
            .map_err(|e| {
                E::custom(format!(
                    "'{s}' is not a duration ({e}); expected e.g. 200ms, 5s or 1m"
                ))
            })
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Err(Self::no_unit(n))
    }

    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Self::Value, E> {
        Err(Self::no_unit(n))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Self::Value, E> {
        Err(Self::no_unit(n))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

/// For listen addresses: an IP and port (`127.0.0.1:4317`, `0.0.0.0:4317`, `[::1]:4317`), or
/// `localhost:PORT` (127.0.0.1), the spelling the OpenTelemetry Collector's own defaults use. Other host
/// names are refused rather than resolved: a listener must not depend on DNS at start-up.
pub fn socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    d.deserialize_any(SocketAddrVisitor)
}

/// [`socket_addr`] for an optional address (absent or `null`: `None`).
pub fn option_socket_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    d.deserialize_option(OptionSocketAddrVisitor)
}

/// Parses the spellings [`socket_addr`] accepts.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    let t = s.trim();
    if let Some(port) = t.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
        }
    }
    t.parse().map_err(|_| {
        format!(
            "'{s}' is not an address and port (expected e.g. 127.0.0.1:4317, 0.0.0.0:4317 or \
             localhost:4317; other host names are not resolved)"
        )
    })
}

struct SocketAddrVisitor;

impl serde::de::Visitor<'_> for SocketAddrVisitor {
    type Value = SocketAddr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address and port such as 127.0.0.1:4317")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
        parse_socket_addr(s).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Self::Value, E> {
        Err(E::custom(format!(
            "'{n}' is a port alone; write 127.0.0.1:{n} (this host only) or 0.0.0.0:{n} (all interfaces)"
        )))
    }
}

struct OptionSocketAddrVisitor;

impl<'de> serde::de::Visitor<'de> for OptionSocketAddrVisitor {
    type Value = Option<SocketAddr>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an address and port such as 127.0.0.1:4317")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        socket_addr(d).map(Some)
    }
}

/// For `Option<T>` fields where naming the key enables the feature: a present key with no value (YAML
/// `null`, as in `grpc:`) means `Some(T::default())`; an absent key stays `None` through `#[serde(default)]`.
pub fn present_means_default<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_read_binary_and_decimal_units() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 20));
        assert_eq!("2GB".parse::<ByteSize>().unwrap(), ByteSize(2_000_000_000));
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap(), ByteSize(1536));
        assert_eq!("100".parse::<ByteSize>().unwrap(), ByteSize(100));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }

    #[test]
    fn listen_addresses_take_ips_and_localhost_only() {
        assert_eq!(
            parse_socket_addr("0.0.0.0:4317").unwrap(),
            "0.0.0.0:4317".parse().unwrap()
        );
        assert_eq!(
            parse_socket_addr("[::1]:4317").unwrap(),
            "[::1]:4317".parse().unwrap()
        );
        assert_eq!(
            parse_socket_addr("localhost:4318").unwrap(),
            "127.0.0.1:4318".parse().unwrap()
        );
        assert!(parse_socket_addr("collector:4317")
            .unwrap_err()
            .contains("not resolved"));
        assert!(parse_socket_addr("localhost").is_err());
        let e = socket_addr(serde_json::json!(4317)).unwrap_err();
        assert!(e.to_string().contains("write 127.0.0.1:4317"), "{e}");
        assert_eq!(option_socket_addr(serde_json::Value::Null).unwrap(), None);
        assert_eq!(
            option_socket_addr(serde_json::json!("localhost:8888")).unwrap(),
            Some("127.0.0.1:8888".parse().unwrap())
        );
    }

    #[test]
    fn durations_read_humantime_and_ask_for_a_unit() {
        let d: HumanDuration = serde_json::from_value(serde_json::json!("1m30s")).unwrap();
        assert_eq!(d.get(), Duration::from_secs(90));
        let e = serde_json::from_value::<HumanDuration>(serde_json::json!(200)).unwrap_err();
        assert_eq!(e.to_string(), "'200' has no unit; write e.g. 200ms or 200s");
        let e = serde_json::from_value::<HumanDuration>(serde_json::json!("soon")).unwrap_err();
        assert!(e.to_string().starts_with("'soon' is not a duration"), "{e}");
        let e = serde_json::from_value::<HumanDuration>(serde_json::json!([1])).unwrap_err();
        assert!(
            e.to_string().contains("expected a duration such as 200ms"),
            "{e}"
        );
    }
}
