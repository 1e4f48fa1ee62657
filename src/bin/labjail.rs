//! labjail: the per-claim jail's init, started by labd (`labjail start`,
//! configuration as one JSON line on stdin). Not meant to be run by hand;
//! see `boardlab::jail::init` for the protocol.

fn main() {
    let code = match std::env::args().nth(1).as_deref() {
        Some("start") => boardlab::jail::init::start_main(),
        Some("console") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            boardlab::jail::console::console_main(&args)
        }
        _ => {
            eprintln!(
                "labjail is the jail init started by labd (`labjail start`, config on stdin); it is not run by hand"
            );
            2
        }
    };
    std::process::exit(code);
}
