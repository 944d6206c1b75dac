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
    pub token_file: PathBuf,
}

/// Sends the confirmation; prints what it applies.
pub fn run(args: &ConfirmArgs) -> Result<(), ClientError> {
    let url = Url::parse(&args.api.api)?;
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| ClientError::BadArgument(format!("--token-file {}: {e}", args.token_file.display())))?;
    let auth = format!("Bearer {}", token.trim());
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
