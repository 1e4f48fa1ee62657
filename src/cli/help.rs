//! The general help of labcli (`labcli --help`, and the notes of its man
//! page): what the options do, the environment, the exit statuses.

/// One line: what labcli is.
pub const ABOUT: &str = "The boardlab client: claim, power, watch and release the lab's boards";

/// After the list of commands and options.
pub const AFTER_HELP: &str = "\
Handles and boards:
  A claim's HANDLE (bl-...) is a secret: with it you, and only you, act on
  the board. Where a command takes HANDLE you may name a board you hold
  instead (labcli finds its handle with `status --mine`), or leave it out:
  inside a board's jail the jail's own claim is meant, elsewhere $LABD_HANDLE.

Options worth knowing:
  claim --power       power the board on as soon as it is yours
  claim --wait[=DUR]  wait in the lab's queue for a free board (up to DUR, else 365d)
  --json              print each result as one JSON object; every error, usage
                      errors too, as {\"ok\":false,\"error\":{\"code\":..,\"message\":..}}
  --as NAME           act for user NAME: labd believes it only from an account in
                      daemon.trusted_gateways (the forced command of a shared ssh
                      gateway); an ssh user's own words can never set it

DUR is a number and a unit (ms, s, m, h, d), or several: 90s, 30m, 1h30m, 1.5h, 1d.

Environment:
  LABD_SOCKET   labd's socket when --socket is not given (else
                /run/boardlab/jail.sock when present, else /run/boardlab/labd.sock)
  LABD_HANDLE   the handle (or board) of a command given none, outside a jail
  SSH_ORIGINAL_COMMAND  as an ssh forced command: the user's command line, split
                into words like sh does (quotes, backslashes, # comments) and
                never run by a shell; --socket, --as and `run` are refused in it

With no command, requests are read from standard input, one a line (a command
line or a JSON request object), and one JSON reply a line is written.

Exit status:
  0  success
  1  the lab refused or failed the request (its error code on stderr);
     `run`: the command's own status; `console --expect`: not seen in time
  2  usage error: nothing was sent
  3  labd unreachable (stderr names the socket and what to check)";
