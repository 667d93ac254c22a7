//! The `sluice` command: the relay appliance's single binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod hw;

/// sluice: a media relay for RTP/SRTP meetings, with E2EE pass-through.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Report what this machine offers sluice: CPU crypto instructions and
    /// the AES-GCM backend that would be used.
    Hw,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hw => {
            print!("{}", hw::report());
            ExitCode::SUCCESS
        }
    }
}
