//! `blindpass admin`: the operator's client for the admin endpoints — open,
//! extend and end isolation periods, and list them. Authenticates with the
//! admin token the server generated (`admin.token` in its data directory),
//! read from a file or from `BLINDPASS_ADMIN_TOKEN`, never from argv.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use super::CliError;
use crate::client::{Client, ClientError};
use crate::protocol::api::{
    DestroyedPeriod, ExtendPeriod, OpenPeriod, PeriodInfo, PeriodList, ProblemType, paths,
};

/// Environment variable that may hold the admin token itself.
const TOKEN_ENV: &str = "BLINDPASS_ADMIN_TOKEN";

/// Arguments of `blindpass admin`.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Issuer base URL.
    #[arg(
        long,
        env = "BLINDPASS_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// File holding the admin token (the server writes it to `admin.token`
    /// in its data directory). Without it, the token is taken from the
    /// BLINDPASS_ADMIN_TOKEN environment variable.
    #[arg(long, env = "BLINDPASS_ADMIN_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the server's JSON answer instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// Subcommands of `blindpass admin`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Isolation periods: the lifetime of all personal data enrolled in them.
    #[command(subcommand)]
    Period(PeriodCommand),
}

/// Subcommands of `blindpass admin period`.
#[derive(Debug, Subcommand)]
pub enum PeriodCommand {
    /// Open an isolation period. Its key is destroyed at ends-at + grace.
    Open {
        /// A label for the period.
        #[arg(long)]
        name: String,
        /// When it ends (RFC 3339, e.g. 2026-12-31T23:59:59Z).
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
        ends_at: OffsetDateTime,
        /// Seconds after the end before the data is destroyed.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        grace_s: u64,
    },
    /// Move a live period's end.
    Extend {
        /// The period id (hex), as listed.
        id: String,
        /// The new end (RFC 3339).
        #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
        ends_at: OffsetDateTime,
    },
    /// End a period now; its data is destroyed after its grace time.
    End {
        /// The period id (hex), as listed.
        id: String,
    },
    /// List live and destroyed periods.
    List,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{e} (expected RFC 3339, e.g. 2026-12-31T23:59:59Z)"))
}

/// Runs `blindpass admin`.
pub fn run(args: AdminArgs) -> anyhow::Result<ExitCode> {
    let token = admin_token(args.token_file.as_ref())?;
    let api = Client::new(&args.server);
    let bearer = Some(token.as_str());
    let AdminCommand::Period(command) = args.command;
    let is_list = matches!(command, PeriodCommand::List);
    let answer: serde_json::Value = match command {
        PeriodCommand::Open {
            name,
            ends_at,
            grace_s,
        } => {
            let body = OpenPeriod {
                name,
                ends_at,
                grace_s,
            };
            api.post_json(paths::ADMIN_PERIODS, &body, bearer, 201)
        }
        PeriodCommand::Extend { id, ends_at } => api.post_json(
            &paths::admin_period_extend(period_id(&id)?),
            &ExtendPeriod { ends_at },
            bearer,
            200,
        ),
        PeriodCommand::End { id } => api.post_json(
            &paths::admin_period_end(period_id(&id)?),
            &serde_json::json!({}),
            bearer,
            200,
        ),
        PeriodCommand::List => api.get_json(paths::ADMIN_PERIODS, bearer),
    }
    .map_err(explain)?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let unexpected = |e: serde_json::Error| {
        CliError::new(
            format!("unexpected answer from the server: {e}"),
            "use --json to see it raw",
        )
    };
    if is_list {
        let list: PeriodList = serde_json::from_value(answer).map_err(unexpected)?;
        print_live(&list.live);
        outln!();
        print_destroyed(&list.destroyed);
    } else {
        let info: PeriodInfo = serde_json::from_value(answer).map_err(unexpected)?;
        if info.destroy_pending {
            // Ended with no grace: the key went in the same call, so the
            // period is shown as the list now has it, destroyed if it is.
            let list: PeriodList = api
                .get_json(paths::ADMIN_PERIODS, bearer)
                .map_err(explain)?;
            if let Some(gone) = list.destroyed.iter().find(|p| p.id == info.id) {
                print_destroyed(std::slice::from_ref(gone));
                return Ok(ExitCode::SUCCESS);
            }
        }
        print_live(std::slice::from_ref(&info));
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339 to the second: sub-second digits only clutter a table.
fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// Period ids are hex; checking here keeps anything else out of the URL path.
fn period_id(id: &str) -> anyhow::Result<&str> {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(id)
    } else {
        Err(CliError::new(
            format!("{id:?} is not a period id"),
            "period ids are hex, as shown by `blindpass admin period list`",
        )
        .into())
    }
}

/// The admin token: the first line of `--token-file`, else the environment.
fn admin_token(file: Option<&PathBuf>) -> anyhow::Result<Zeroizing<String>> {
    let token = match file {
        Some(path) => {
            let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                CliError::new(
                    format!("cannot read {}: {e}", path.display()),
                    "the server writes admin.token into its data directory (mode 0600)",
                )
            })?);
            Zeroizing::new(text.lines().next().unwrap_or("").trim().to_owned())
        }
        None => Zeroizing::new(
            std::env::var(TOKEN_ENV)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
    };
    if token.is_empty() {
        return Err(CliError::new(
            "no admin token",
            format!("pass --token-file DATA_DIR/admin.token, or set {TOKEN_ENV}"),
        )
        .into());
    }
    Ok(token)
}

fn print_live(periods: &[PeriodInfo]) {
    if periods.is_empty() {
        outln!("no live periods");
        return;
    }
    outln!(
        "{:<32}  {:<16}  {:<20}  {:<20}  {:>8}  {:<20}  STATE",
        "ID",
        "NAME",
        "OPENED",
        "ENDS",
        "GRACE_S",
        "DEADLINE"
    );
    for p in periods {
        outln!(
            "{:<32}  {:<16}  {:<20}  {:<20}  {:>8}  {:<20}  {}",
            p.id,
            p.name,
            rfc3339(p.opened_at),
            rfc3339(p.ends_at),
            p.grace_s,
            rfc3339(p.deadline),
            if p.destroy_pending {
                "destroying"
            } else {
                "live"
            }
        );
    }
}

fn print_destroyed(periods: &[DestroyedPeriod]) {
    if periods.is_empty() {
        outln!("no destroyed periods");
        return;
    }
    outln!(
        "{:<32}  {:<16}  {:<20}  DESTROYED",
        "ID (destroyed)",
        "NAME",
        "DEADLINE"
    );
    for p in periods {
        outln!(
            "{:<32}  {:<16}  {:<20}  {}",
            p.id,
            p.name,
            rfc3339(p.deadline),
            rfc3339(p.destroyed_at)
        );
    }
}

/// Turns an API error into a message with what to do next.
fn explain(err: ClientError) -> anyhow::Error {
    use ProblemType as P;
    let hint = match &err {
        ClientError::Problem(p) => match p.kind {
            Some(P::Unauthorized | P::Forbidden) => {
                "use the token from the server's data directory (admin.token)"
            }
            Some(P::NotFound) => "check the id with `blindpass admin period list`",
            Some(P::InvalidInput | P::MalformedJson) => "check the values given",
            _ => "see the server's log for details",
        },
        ClientError::Network { .. } => "check that the server is running and --server is right",
        _ => "check that --server points at a blindpass issuer",
    };
    CliError::new(err.to_string(), hint).into()
}
