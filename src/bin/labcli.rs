//! labcli: the boardlab client. Everything lives in `boardlab::cli`.

fn main() {
    std::process::exit(boardlab::cli::main());
}
