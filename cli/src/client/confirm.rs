//! `skybridge confirm-removal SOURCE`: applies a source's held mass removal at once
//! (`POST /api/v1/sources/{id}/confirm-removal`, with the API's bearer token).

use std::path::PathBuf;

use clap::Args;
use skybridge_cli::http;
use skybridge_federator::api::sources::ConfirmedDto;

use super::{ApiArgs, ClientError, Output, Url, block_on, decode, encode};

/// Arguments of `skybridge confirm-removal`.
#[derive(Debug, Args)]
pub struct ConfirmArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    /// The source whose held answer should apply now.
    pub source: String,
    /// File holding the API's bearer token (the federator's `api.token_file`).
    #[arg(long, env = "SKYBRIDGE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The bearer token itself, when no token file is given (from the environment only, so
    /// that it stays out of shell history and process listings).
    #[arg(skip = std::env::var("SKYBRIDGE_TOKEN").ok())]
    pub token: Option<String>,
}

/// The `Authorization` value: the token file when given, else `$SKYBRIDGE_TOKEN`.
fn bearer(token_file: Option<&std::path::Path>, token: Option<&str>) -> Result<String, ClientError> {
    let token = match (token_file, token) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| ClientError::BadArgument(format!("--token-file {}: {e}", f.display())))?,
        (None, Some(t)) => t.to_owned(),
        (None, None) => {
            return Err(ClientError::BadArgument(
                "no API token: give --token-file FILE (or $SKYBRIDGE_TOKEN_FILE), or set $SKYBRIDGE_TOKEN".into(),
            ));
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(ClientError::BadArgument("the API token is empty".into()));
    }
    Ok(format!("Bearer {token}"))
}

/// Sends the confirmation; prints what it applies.
pub fn run(args: &ConfirmArgs) -> Result<(), ClientError> {
    let url = Url::parse(&args.api.api)?;
    let auth = bearer(args.token_file.as_deref(), args.token.as_deref())?;
    let path = format!("{}/api/v1/sources/{}/confirm-removal", url.prefix, encode(&args.source));
    let headers = [("Authorization", auth.as_str()), ("Accept", "application/json")];
    let req = http::Request { method: "POST", host: &url.authority, path: &path, headers: &headers, body: &[] };
    let (status, body) = block_on(http::request(&url.authority, req, super::TIMEOUT, super::MAX_RESPONSE))?
        .map_err(|e| ClientError::Http(format!("http://{}{path}", url.authority), e))?;
    if status != 202 {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().chars().take(200).collect());
        return Err(ClientError::Status { what: path, status, message });
    }
    let c: ConfirmedDto = decode(&path, &body)?;
    match args.api.output {
        Output::Json => println!("{}", String::from_utf8_lossy(&body)),
        Output::Table => println!(
            "confirmed: source {}: the removal of {} of its {} services applies now",
            c.source, c.held.removed, c.held.of
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_wins_then_the_environment_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        assert_eq!(bearer(Some(&file), Some("from-env")).unwrap(), "Bearer from-file");
        assert_eq!(bearer(None, Some(" from-env ")).unwrap(), "Bearer from-env");
        let none = bearer(None, None).unwrap_err().to_string();
        assert!(none.contains("--token-file") && none.contains("SKYBRIDGE_TOKEN"), "{none}");
        assert!(bearer(None, Some("  ")).is_err());
        assert!(bearer(Some(&dir.path().join("missing")), None).unwrap_err().to_string().contains("missing"));
    }
}
