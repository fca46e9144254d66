//! `cargo run` serves the site.

use std::process::ExitCode;

#[rocket::main]
async fn main() -> ExitCode {
    match rango::rocket().launch().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rango: {e}");
            ExitCode::FAILURE
        }
    }
}
