//! `blindpass wallet`: the resident's side — enrol, log in, obtain passes
//! by blind issuance, and show them as QR codes. Passwords are read from
//! stdin (first line), never from the command line.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use zeroize::Zeroizing;

use super::CliError;
use crate::client::Client;
use crate::crypto::secret::Passphrase;
use crate::protocol::api::{PersonalData, ProblemType};
use crate::protocol::permit::{ClassName, Window, WindowKind};
use crate::wallet::{PassTime, Wallet, WalletError, WindowChoice, qr, write_private_file};

/// Server used when neither `--server` nor the wallet names one.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// Arguments of `blindpass wallet`.
#[derive(Debug, clap::Args)]
pub struct WalletArgs {
    /// Issuer base URL [default: the server the wallet last used, else
    /// http://127.0.0.1:8080].
    #[arg(long, env = "BLINDPASS_SERVER", global = true)]
    pub server: Option<String>,
    /// Wallet file. It holds your session and your passes: keep it private
    /// (it is created readable by you only).
    #[arg(
        long,
        env = "BLINDPASS_WALLET",
        default_value = "blindpass-wallet.json",
        global = true
    )]
    pub wallet: PathBuf,
    /// The issuer's audit log key (`<name>+<hex id>+<base64 key>`, as
    /// `blindpass serve` prints it). Before every pass request the wallet
    /// checks in the log signed by this key that the signing key it is
    /// given was published for everyone. Without it, the key served at
    /// `/audit/key` on first use is pinned in the wallet file (trust on
    /// first use: a server that is already lying at that moment is not
    /// caught, one that changes its log later is).
    #[arg(long, env = "BLINDPASS_LOG_KEY", global = true)]
    pub log_key: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: WalletCommand,
}

/// Subcommands of `blindpass wallet`.
#[derive(Debug, Subcommand)]
pub enum WalletCommand {
    /// Enrol into the current isolation period, then log in. The password
    /// (at least 10 characters) is read from the first line of stdin.
    #[command(alias = "enrol")]
    Enroll(EnrollArgs),
    /// Log in; the password is read from the first line of stdin.
    Login {
        /// Identity document number, as given at enrolment.
        #[arg(long)]
        document_number: String,
    },
    /// End the session on the server and forget it.
    Logout,
    /// Erase your enrolment on the server now. Passes already obtained stay
    /// in the wallet and remain valid in their windows.
    Erase,
    /// Obtain a pass by blind issuance and store it in the wallet.
    Request(RequestArgs),
    /// List the passes in the wallet.
    List,
    /// Show a pass: as a QR code in the terminal (default), or write it to
    /// a PNG or SVG file, or print its payload text.
    Show(ShowArgs),
    /// Delete a pass from the wallet.
    Forget {
        /// The pass number, as listed.
        number: usize,
    },
}

/// Arguments of `blindpass wallet enroll`. These are personal data: the
/// issuer keeps them encrypted until the isolation period ends and then
/// destroys the key. (Flags are visible to other local users in the process
/// list; the password is therefore read from stdin instead.)
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// Full name as on the identity document.
    #[arg(long)]
    pub full_name: String,
    /// Date of birth, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub date_of_birth: Date,
    /// Identity document number.
    #[arg(long)]
    pub document_number: String,
    /// Home address.
    #[arg(long)]
    pub address: String,
    /// Phone number in international form, e.g. +74951234567.
    #[arg(long)]
    pub phone: String,
    /// Employer's tax number (needed for `work` passes).
    #[arg(long)]
    pub employer_tax_number: Option<String>,
}

/// Arguments of `blindpass wallet request`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("when").required(true).args(["date", "week"])))]
pub struct RequestArgs {
    /// Permit class, e.g. personal, work, medical.
    #[arg(long)]
    pub class: String,
    /// The day (YYYY-MM-DD). For a weekly class: the ISO week containing it.
    #[arg(long, value_parser = parse_date)]
    pub date: Option<Date>,
    /// The ISO week (YYYY-Www, e.g. 2026-W49), for weekly classes.
    #[arg(long, value_parser = parse_week)]
    pub week: Option<Window>,
}

/// Arguments of `blindpass wallet show`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("format").args(["png", "svg", "text"])))]
pub struct ShowArgs {
    /// The pass number, as listed.
    pub number: usize,
    /// Write the QR code to this PNG file (created readable by you only).
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Write the QR code to this SVG file (created readable by you only).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Print the payload text (`BP1:…`) instead of a QR code.
    #[arg(long)]
    pub text: bool,
    /// Draw dark modules as blocks (for terminals with a light background).
    #[arg(long)]
    pub light_terminal: bool,
}

fn parse_date(text: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format).map_err(|_| "expected a date as YYYY-MM-DD".to_owned())
}

fn parse_week(text: &str) -> Result<Window, String> {
    match Window::parse(text) {
        Ok(window) if window.kind() == WindowKind::IsoWeek => Ok(window),
        _ => Err("expected an ISO week as YYYY-Www, e.g. 2026-W49".to_owned()),
    }
}

/// Runs `blindpass wallet`.
pub fn run(args: WalletArgs) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let path = args.wallet;
    // Commands that can start a wallet open-or-create it; the rest need one.
    let mut wallet = match &args.command {
        WalletCommand::Enroll(_) | WalletCommand::Login { .. } => {
            Wallet::open_or_new(&path, args.server.as_deref().unwrap_or(DEFAULT_SERVER))
        }
        _ => Wallet::open(&path),
    }
    .map_err(explain)?;
    if let Some(key) = &args.log_key {
        if wallet.pin_log_key(key).map_err(explain)? {
            eprintln!("note: the wallet now trusts the audit log key given with --log-key");
        }
    }
    let server = args.server.unwrap_or_else(|| wallet.state().server.clone());
    let api = Client::new(&server);
    match args.command {
        WalletCommand::Enroll(e) => {
            let password = read_password()?;
            let data = PersonalData {
                full_name: e.full_name,
                date_of_birth: e.date_of_birth,
                document_number: e.document_number,
                address: e.address,
                phone: e.phone,
                employer_tax_number: e.employer_tax_number,
            };
            wallet.enrol(&api, &data, &password).map_err(explain)?;
            outln!("enrolled at {server}");
            match wallet.login(&api, &data.document_number, &password) {
                Ok(session) => outln!("logged in until {}", rfc3339(session.expires_at)),
                Err(e) => {
                    return Err(CliError::new(
                        format!("enrolled, but logging in failed: {e}"),
                        "run `blindpass wallet login --document-number …`",
                    )
                    .into());
                }
            }
        }
        WalletCommand::Login { document_number } => {
            let password = read_password()?;
            let session = wallet
                .login(&api, &document_number, &password)
                .map_err(explain)?;
            outln!("logged in until {}", rfc3339(session.expires_at));
        }
        WalletCommand::Logout => {
            wallet.logout(&api).map_err(explain)?;
            outln!("logged out");
        }
        WalletCommand::Erase => {
            wallet.erase(&api).map_err(explain)?;
            outln!("your enrolment was erased on the server; passes already obtained remain");
        }
        WalletCommand::Request(r) => {
            let class = ClassName::new(&r.class).map_err(|e| {
                CliError::new(
                    e.to_string(),
                    "see `blindpass verify sync` for the classes offered",
                )
            })?;
            let choice = match (r.week, r.date) {
                (Some(week), _) => WindowChoice::Exactly(week),
                (None, Some(date)) => WindowChoice::Containing(date),
                // clap's required group makes one of them present.
                (None, None) => {
                    return Err(CliError::new("give --date or --week", "see --help").into());
                }
            };
            let number = wallet.request(&api, &class, choice, now).map_err(explain)?;
            let pass = wallet.pass(number).map_err(explain)?;
            outln!("pass {number}: {} {}", pass.class, pass.window);
            outln!("show it with: blindpass wallet show {number}");
        }
        WalletCommand::List => list(&wallet, now),
        WalletCommand::Show(s) => show(&wallet, &s, now)?,
        WalletCommand::Forget { number } => {
            let pass = wallet.forget(number).map_err(explain)?;
            outln!("forgot pass {number} ({} {})", pass.class, pass.window);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// RFC 3339 to the second: sub-second digits only clutter a table.
fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn time_word(t: PassTime) -> &'static str {
    match t {
        PassTime::Upcoming => "upcoming",
        PassTime::Current => "current",
        PassTime::Expired => "expired",
    }
}

fn list(wallet: &Wallet, now: OffsetDateTime) {
    let passes = wallet.passes();
    if passes.is_empty() {
        outln!(
            "no passes; obtain one with: blindpass wallet request --class personal --date YYYY-MM-DD"
        );
        return;
    }
    outln!(
        "{:>3}  {:<12} {:<10}  {:<8}  OBTAINED",
        "#",
        "CLASS",
        "WINDOW",
        "STATE"
    );
    for (i, pass) in passes.iter().enumerate() {
        outln!(
            "{:>3}  {:<12} {:<10}  {:<8}  {}",
            i + 1,
            pass.class.as_str(),
            pass.window.to_string(),
            time_word(pass.time_at(now)),
            rfc3339(pass.obtained_at)
        );
    }
}

fn show(wallet: &Wallet, args: &ShowArgs, now: OffsetDateTime) -> anyhow::Result<()> {
    let pass = wallet.pass(args.number).map_err(explain)?;
    let label = format!(
        "pass {}: {} {} ({})",
        args.number,
        pass.class,
        pass.window,
        time_word(pass.time_at(now))
    );
    if let Some(path) = &args.png {
        let png = qr::render_png(&pass.payload).map_err(explain)?;
        write_private_file(path, &png).map_err(explain)?;
        outln!("{label} written to {}", path.display());
    } else if let Some(path) = &args.svg {
        let svg = qr::render_svg(&pass.payload).map_err(explain)?;
        write_private_file(path, svg.as_bytes()).map_err(explain)?;
        outln!("{label} written to {}", path.display());
    } else if args.text {
        outln!("{}", pass.payload);
    } else {
        outln!(
            "{}",
            qr::render_terminal(&pass.payload, !args.light_terminal).map_err(explain)?
        );
        outln!("{label}");
    }
    Ok(())
}

/// The first line of stdin, without its line ending.
fn read_password() -> anyhow::Result<Passphrase> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        // Without a terminal-control dependency the input is echoed; say so.
        eprint!("password (shown as you type; or pipe it in): ");
    }
    let mut line = Zeroizing::new(String::new());
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::new(format!("cannot read the password: {e}"), "pipe it on stdin"))?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CliError::new(
            "no password on stdin",
            "give it as the first line of stdin, e.g. from a password manager",
        )
        .into());
    }
    Ok(Passphrase::new(password.to_owned()))
}

/// Turns a wallet error into a message with what to do next.
fn explain(err: WalletError) -> anyhow::Error {
    let hint: String = match &err {
        WalletError::NoWallet(_) => {
            "enrol or log in first (blindpass wallet enroll … / login …), or point --wallet at your wallet file".into()
        }
        WalletError::CorruptWallet { .. } => {
            "the file is not a blindpass wallet; check --wallet".into()
        }
        WalletError::Io { .. } => "check the path and its permissions".into(),
        WalletError::Network { .. } => {
            "check that the issuer is reachable and --server is right, then try again".into()
        }
        WalletError::Problem(p) => match p.kind {
            Some(ProblemType::InvalidCredentials) => "check the document number and the password".into(),
            Some(ProblemType::Unauthorized | ProblemType::SessionExpired) => {
                "log in again: blindpass wallet login --document-number …".into()
            }
            Some(ProblemType::QuotaExceeded) => "the weekly quota for this class is used up; try next ISO week".into(),
            Some(ProblemType::WindowOutOfRange) => {
                "passes are issued for today and the next few days only".into()
            }
            Some(ProblemType::NotEligible) => {
                "this class needs data your enrolment lacks (e.g. --employer-tax-number)".into()
            }
            Some(ProblemType::DuplicateDocument) => "this document is already enrolled: log in instead".into(),
            Some(ProblemType::NoOpenPeriod) => "no isolation period is open; nothing to enrol into".into(),
            Some(ProblemType::InvalidInput) => "correct the field named above".into(),
            Some(ProblemType::RateLimited | ProblemType::Timeout) => "wait a few seconds and try again".into(),
            _ => "if this persists, tell the operator".into(),
        },
        WalletError::UnexpectedResponse { .. } => {
            "check that --server points at a blindpass issuer".into()
        }
        WalletError::NotLoggedIn => {
            "log in: blindpass wallet login --document-number …".into()
        }
        WalletError::UnknownClass { .. } => "use one of the classes offered".into(),
        WalletError::WrongWindowKind { kind, .. } => match kind {
            WindowKind::Day => "use --date YYYY-MM-DD".into(),
            WindowKind::IsoWeek => "use --week YYYY-Www (or --date for the week containing it)".into(),
        },
        WalletError::NoKeyForWindow { available, .. } => {
            let list: Vec<String> = available.iter().map(Window::to_string).collect();
            if list.is_empty() {
                "the issuer publishes no windows for this class right now".into()
            } else {
                format!("windows on offer: {}", list.join(", "))
            }
        }
        WalletError::BadDirectory(_) | WalletError::BadSignature => {
            "do not use this issuer's answer; tell the operator (or an auditor)".into()
        }
        WalletError::UnloggedKey { .. } | WalletError::SplitKey { .. } => {
            "no pass was requested; report this to an auditor (blindpass audit verify)".into()
        }
        WalletError::AuditLog(_) => {
            "no pass was requested; if you switched issuer, give its key with --log-key, else report this to an auditor".into()
        }
        WalletError::BadLogKey(_) => {
            "give the key exactly as `blindpass serve` prints it (audit log key: …)".into()
        }
        WalletError::NoSuchPass { .. } => "see `blindpass wallet list` for the numbers".into(),
        WalletError::Qr(_) => "use --text to print the payload instead".into(),
        WalletError::Input(_) => "check the input".into(),
    };
    CliError::new(err.to_string(), hint).into()
}
