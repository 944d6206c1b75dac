//! Listener addresses, parsed once: `"ip:port"` or `"off"`. What the rest of the gateway reads
//! is a `SocketAddr` or a [`ListenAddr`], never a string to parse again.

use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

const EXPECTED: &str = "expected ip:port (e.g. 0.0.0.0:15001) or \"off\"";

/// A listener that may be turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenAddr {
    Off,
    At(SocketAddr),
}

impl ListenAddr {
    /// The address, unless off.
    pub fn addr(self) -> Option<SocketAddr> {
        match self {
            ListenAddr::Off => None,
            ListenAddr::At(a) => Some(a),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Off => f.write_str("off"),
            ListenAddr::At(a) => a.fmt(f),
        }
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "off" {
            return Ok(ListenAddr::Off);
        }
        s.parse().map(ListenAddr::At).map_err(|_| serde::de::Error::custom(format!("{s:?}: {EXPECTED}")))
    }
}

/// `#[serde(with)]` for listeners that cannot be turned off (the tunnel, admin, a port-mapped
/// listener): an address, and `"off"` refused saying so.
pub(crate) mod required {
    use std::net::SocketAddr;

    use serde::Deserialize;

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
        let s = String::deserialize(d)?;
        if s == "off" {
            return Err(serde::de::Error::custom("this listener cannot be turned off"));
        }
        s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?}: expected ip:port (e.g. 0.0.0.0:15443)")))
    }
}

/// A port-mapped listener's service, as clients name it (`name.namespace` or the clusterset
/// name), parsed into its key once.
pub(crate) fn service_host<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<skybridge_api::model::ServiceKey, D::Error> {
    let s = String::deserialize(d)?;
    skybridge_api::model::ServiceKey::from_host(&s).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct W {
        a: ListenAddr,
        #[serde(with = "required")]
        b: SocketAddr,
    }

    #[test]
    fn parsed_once_with_reasons() {
        let w: W = toml::from_str("a = \"off\"\nb = \"127.0.0.1:1\"").unwrap();
        assert_eq!((w.a, w.b.port()), (ListenAddr::Off, 1));
        let w: W = toml::from_str("a = \"[::1]:53\"\nb = \"0.0.0.0:0\"").unwrap();
        assert_eq!(w.a.addr().map(|a| a.port()), Some(53));
        assert_eq!(w.a.to_string(), "[::1]:53");
        let e = toml::from_str::<W>("a = \"localhost\"\nb = \"127.0.0.1:1\"").err().unwrap().to_string();
        assert!(e.contains("\"localhost\"") && e.contains("ip:port"), "{e}");
        let e = toml::from_str::<W>("a = \"off\"\nb = \"off\"").err().unwrap().to_string();
        assert!(e.contains("b = \"off\"") && e.contains("cannot be turned off"), "{e}");
    }
}
