//! Argument pieces shared by every client command.

/// Where to reach the cluster.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct ConnectArgs {
    /// A broker to bootstrap from, as HOST:PORT.
    #[arg(
        short = 'b',
        long = "bootstrap-server",
        value_name = "HOST:PORT",
        default_value = "localhost:9092",
        env = "FJORD_BOOTSTRAP_SERVER"
    )]
    pub bootstrap_server: String,
}

/// Parses `KEY=VALUE` (the value may itself contain `=`; the key may not be empty).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_first_equals_and_rejects_missing_key() {
        assert_eq!(parse_key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(parse_key_value("retention.ms="), Ok(("retention.ms".into(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }
}
