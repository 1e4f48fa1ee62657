//! A board's microSD card (`storage = { mux = "...", ... }` in its board
//! file) and the lab's `[storage]` table.
//!
//! Three muxes:
//! - `usbsdmux`: the Linux Automation USB-SD-Mux; its control interface
//!   (a SCSI generic node) and its card reader (the block device of the
//!   same SCSI device) found by `match` (udev properties of the USB
//!   device, as `console.match`), or given as `control` and `card` paths;
//! - `sdwire`: the SDWire family, by `variant` (`sdwirec`: the FTDI-based
//!   SDWire and SDWireC; `sdwire3`) and `serial` (the USB serial);
//! - `sim`: labsim's mux, a card that is an image file (`image`) and a
//!   control file (`control`) the simulated board reads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::Ctx;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    mux: String,
    #[serde(rename = "match")]
    match_props: Option<BTreeMap<String, String>>,
    control: Option<String>,
    card: Option<String>,
    variant: Option<String>,
    serial: Option<String>,
    image: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorageLab {
    #[serde(default)]
    wipe_on_release: bool,
}

/// How a USB-SD-Mux is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UsbSdMuxFind {
    /// By the properties of its USB device (`ID_SERIAL_SHORT`, ...).
    Match(BTreeMap<String, String>),
    /// Fixed nodes: the SCSI generic control node and the card's block
    /// device.
    Paths { control: PathBuf, card: PathBuf },
}

/// The SDWire variants, which are switched differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdWireVariant {
    /// The FTDI FT200XD based SDWire and Badgerd's SDWireC: a CBUS pin.
    SdWireC,
    /// Badgerd's SDWire3: the mass-storage interface's driver bound (host)
    /// or not (board).
    SdWire3,
}

impl SdWireVariant {
    pub fn as_str(self) -> &'static str {
        match self {
            SdWireVariant::SdWireC => "sdwirec",
            SdWireVariant::SdWire3 => "sdwire3",
        }
    }
}

/// A board's card and its mux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    UsbSdMux(UsbSdMuxFind),
    SdWire {
        variant: SdWireVariant,
        serial: String,
    },
    /// labsim's card: an image file and the file its board reads the
    /// mux's position from.
    Sim {
        image: PathBuf,
        control: PathBuf,
    },
}

impl Storage {
    /// The mux's name, as board files say it.
    pub fn mux(&self) -> &'static str {
        match self {
            Storage::UsbSdMux(_) => "usbsdmux",
            Storage::SdWire { .. } => "sdwire",
            Storage::Sim { .. } => "sim",
        }
    }
}

/// lab.toml `[storage]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageLab {
    /// Cards are wiped (zeroed, discarded where the card allows) when a
    /// claim ends, not only switched off.
    pub wipe_on_release: bool,
}

pub(super) fn validate_lab(raw: &RawStorageLab) -> StorageLab {
    StorageLab { wipe_on_release: raw.wipe_on_release }
}

fn abs(ctx: &mut Ctx<'_>, span: &std::ops::Range<usize>, key: &str, v: Option<String>) -> Option<PathBuf> {
    match v {
        None => {
            ctx.err(span, format!("storage.{key} is missing"));
            None
        }
        Some(p) if Path::new(&p).is_absolute() && !p.split('/').any(|c| c == "..") => Some(PathBuf::from(p)),
        Some(p) => {
            ctx.err(span, format!("storage.{key} {p:?} must be an absolute path without '..'"));
            None
        }
    }
}

/// Keys a mux does not take, named in the error.
fn unused(ctx: &mut Ctx<'_>, span: &std::ops::Range<usize>, mux: &str, keys: &[(&str, bool)]) -> bool {
    let extra: Vec<&str> = keys.iter().filter(|(_, set)| *set).map(|(k, _)| *k).collect();
    if extra.is_empty() {
        return true;
    }
    ctx.err(span, format!("storage with mux = {mux:?} does not take {}", extra.join(", ")));
    false
}

pub(super) fn validate(ctx: &mut Ctx<'_>, raw: Spanned<RawStorage>) -> Option<Storage> {
    let span = raw.span();
    let r = raw.into_inner();
    match r.mux.as_str() {
        "usbsdmux" => {
            let ok = unused(
                ctx,
                &span,
                "usbsdmux",
                &[("variant", r.variant.is_some()), ("serial", r.serial.is_some()), ("image", r.image.is_some())],
            );
            let find = match (r.match_props, r.control, r.card) {
                (Some(m), None, None) if !m.is_empty() => Some(UsbSdMuxFind::Match(m)),
                (None, Some(c), Some(k)) => {
                    let control = abs(ctx, &span, "control", Some(c));
                    let card = abs(ctx, &span, "card", Some(k));
                    Some(UsbSdMuxFind::Paths { control: control?, card: card? })
                }
                _ => {
                    ctx.err(
                        &span,
                        "storage with mux = \"usbsdmux\" needs `match = { ID_SERIAL_SHORT = \"...\" }`, \
                         or `control = \"/dev/sg...\"` and `card = \"/dev/sd...\"` together",
                    );
                    None
                }
            };
            find.filter(|_| ok).map(Storage::UsbSdMux)
        }
        "sdwire" => {
            let ok = unused(
                ctx,
                &span,
                "sdwire",
                &[
                    ("match", r.match_props.is_some()),
                    ("control", r.control.is_some()),
                    ("card", r.card.is_some()),
                    ("image", r.image.is_some()),
                ],
            );
            let variant = match r.variant.as_deref() {
                Some("sdwirec") | Some("sdwire") => Some(SdWireVariant::SdWireC),
                Some("sdwire3") => Some(SdWireVariant::SdWire3),
                other => {
                    ctx.err(
                        &span,
                        format!("storage.variant {other:?} of an sdwire must be \"sdwirec\" (also the first SDWire) or \"sdwire3\""),
                    );
                    None
                }
            };
            let serial = match r.serial {
                Some(s) if !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic()) => Some(s),
                other => {
                    ctx.err(
                        &span,
                        format!("storage.serial {other:?} must be the SDWire's USB serial (printable, at most 64)"),
                    );
                    None
                }
            };
            Some(Storage::SdWire { variant: variant?, serial: serial? }).filter(|_| ok)
        }
        "sim" => {
            let ok = unused(
                ctx,
                &span,
                "sim",
                &[
                    ("match", r.match_props.is_some()),
                    ("card", r.card.is_some()),
                    ("variant", r.variant.is_some()),
                    ("serial", r.serial.is_some()),
                ],
            );
            let image = abs(ctx, &span, "image", r.image);
            let control = abs(ctx, &span, "control", r.control);
            Some(Storage::Sim { image: image?, control: control? }).filter(|_| ok)
        }
        other => {
            ctx.err(&span, format!("storage.mux {other:?} must be \"usbsdmux\", \"sdwire\" or \"sim\""));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const LAB: &str = "[switches.poe1]\nhost = \"192.0.2.10:161\"\ncommunity = \"private\"\n";

    fn board(storage: &str) -> Result<Option<Storage>, Vec<String>> {
        let text = format!("name = \"b1\"\nclass = \"c\"\npower = {{ switch = \"poe1\", port = 1 }}\n{storage}\n");
        Config::from_texts(Path::new("/cfg"), LAB, &[(PathBuf::from("/cfg/boards.d/b1.toml"), text)], vec![])
            .map(|c| c.boards[0].storage.clone())
            .map_err(|e| e.0.iter().map(|e| format!("{}: {}", e.line, e.message)).collect())
    }

    #[test]
    fn each_mux_loads() {
        assert_eq!(board("").unwrap(), None);
        assert_eq!(
            board("storage = { mux = \"sim\", image = \"/l/sd/b1.img\", control = \"/l/sd/b1.mux\" }").unwrap(),
            Some(Storage::Sim { image: "/l/sd/b1.img".into(), control: "/l/sd/b1.mux".into() })
        );
        let m = board("storage = { mux = \"usbsdmux\", match = { ID_SERIAL_SHORT = \"000000001234\" } }").unwrap();
        assert_eq!(
            m,
            Some(Storage::UsbSdMux(UsbSdMuxFind::Match([("ID_SERIAL_SHORT".into(), "000000001234".into())].into())))
        );
        let m = board("storage = { mux = \"usbsdmux\", control = \"/dev/sg1\", card = \"/dev/sdb\" }").unwrap();
        assert_eq!(
            m,
            Some(Storage::UsbSdMux(UsbSdMuxFind::Paths { control: "/dev/sg1".into(), card: "/dev/sdb".into() }))
        );
        let m = board("storage = { mux = \"sdwire\", variant = \"sdwire3\", serial = \"sdw-7\" }").unwrap();
        assert_eq!(m, Some(Storage::SdWire { variant: SdWireVariant::SdWire3, serial: "sdw-7".into() }));
        assert_eq!(StorageLab::default(), StorageLab { wipe_on_release: false });
    }

    #[test]
    fn mistakes_are_named_on_their_line() {
        for (storage, want) in [
            ("storage = { mux = \"floppy\" }", "4: storage.mux \"floppy\" must be \"usbsdmux\", \"sdwire\" or \"sim\""),
            (
                "storage = { mux = \"sim\", image = \"rel.img\", control = \"/c\" }",
                "4: storage.image \"rel.img\" must be an absolute path without '..'",
            ),
            (
                "storage = { mux = \"sim\", image = \"/a/../b\", control = \"/c\" }",
                "4: storage.image \"/a/../b\" must be an absolute path without '..'",
            ),
            ("storage = { mux = \"sim\", control = \"/c\" }", "4: storage.image is missing"),
            ("storage = { mux = \"usbsdmux\" }", "4: storage with mux = \"usbsdmux\" needs `match"),
            (
                "storage = { mux = \"usbsdmux\", control = \"/dev/sg1\" }",
                "4: storage with mux = \"usbsdmux\" needs `match",
            ),
            ("storage = { mux = \"sdwire\", serial = \"x\" }", "4: storage.variant None of an sdwire must be"),
            ("storage = { mux = \"sdwire\", variant = \"sdwirec\" }", "4: storage.serial None must be"),
            (
                "storage = { mux = \"sim\", image = \"/i\", control = \"/c\", serial = \"x\" }",
                "4: storage with mux = \"sim\" does not take serial",
            ),
            ("storage = { mux = \"sim\", colour = \"red\" }", "unknown field `colour`"),
        ] {
            let errs = board(storage).unwrap_err();
            assert!(errs.iter().any(|e| e.contains(want)), "{storage}: {errs:?}");
        }
    }
}
