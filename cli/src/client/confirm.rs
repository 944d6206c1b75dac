//! `skybridge confirm-removal SOURCE`: applies a source's held mass removal at once
//! (`POST /api/v1/sources/{id}/confirm-removal`, with the API's bearer token).

use std::path::PathBuf;

use clap::Args;
use skybridge_federator::api::sources::ConfirmedDto;

use super::{Api, ApiArgs, ClientError, Output, block_on, decode, encode, status_error};

/// Arguments of `skybridge confirm-removal`.
#[derive(Debug, Args)]
pub(crate) struct ConfirmArgs {
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

/// The `Authorization` value: the token file when given, else `$SKYBRIDGE_TOKEN`; `None` when
/// neither is and an operator certificate (`--cert`) authorizes instead.
pub(super) fn bearer(
    token_file: Option<&std::path::Path>,
    token: Option<&str>,
    cert: bool,
) -> Result<Option<String>, ClientError> {
    let token = match (token_file, token) {
        (Some(f), _) => std::fs::read_to_string(f)
            .map_err(|e| ClientError::BadArgument(format!("--token-file {}: {e}", f.display())))?,
        (None, Some(t)) => t.to_owned(),
        (None, None) if cert => return Ok(None),
        (None, None) => {
            return Err(ClientError::BadArgument(
                "no API token: give --token-file FILE (or $SKYBRIDGE_TOKEN_FILE), set $SKYBRIDGE_TOKEN, or \
                 present an operator certificate (--cert/--key) over https"
                    .into(),
            ));
        }
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(ClientError::BadArgument("the API token is empty".into()));
    }
    Ok(Some(format!("Bearer {token}")))
}

/// Sends the confirmation; prints what it applies.
pub(crate) fn run(args: &ConfirmArgs) -> Result<(), ClientError> {
    let api = Api::new(&args.api)?;
    let auth = bearer(args.token_file.as_deref(), args.token.as_deref(), args.api.cert.is_some())?;
    let path = format!("/api/v1/sources/{}/confirm-removal", encode(&args.source));
    let mut headers = vec![("Accept", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, body) = block_on(api.request("POST", &path, &headers))??;
    if status != 202 {
        return Err(status_error(&path, status, &body));
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
        assert_eq!(bearer(Some(&file), Some("from-env"), false).unwrap().unwrap(), "Bearer from-file");
        assert_eq!(bearer(None, Some(" from-env "), true).unwrap().unwrap(), "Bearer from-env");
        let none = bearer(None, None, false).unwrap_err().to_string();
        assert!(none.contains("--token-file") && none.contains("SKYBRIDGE_TOKEN") && none.contains("--cert"), "{none}");
        assert_eq!(bearer(None, None, true).unwrap(), None, "an operator certificate needs no token");
        assert!(bearer(None, Some("  "), false).is_err());
        assert!(bearer(Some(&dir.path().join("missing")), None, false).unwrap_err().to_string().contains("missing"));
    }
}
