//! `rango` serves the site; `rango <subcommand>` runs a maintenance command (see `rango help`
//! and [`rango::cli`]).

use std::process::ExitCode;

use clap::Parser;

#[rocket::main]
async fn main() -> ExitCode {
    rango::cli::Cli::parse().run().await
}
