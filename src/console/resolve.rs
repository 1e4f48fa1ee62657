//! Finding a board's tty from udev properties, and hearing about hot-plug.
//!
//! Where udevd runs (`/run/udev/control` exists) the udev database is asked
//! through libudev, so every property udev rules set can be matched. Where it
//! does not (containers, this kind of test machine) the common properties are
//! computed from sysfs by [`sysfs_properties`]:
//!
//! | property | from |
//! |---|---|
//! | `DEVNAME` | `/dev/<tty name>` |
//! | `SUBSYSTEM` | `tty` |
//! | `ID_BUS` | `usb` (only USB adapters get `ID_*` properties) |
//! | `ID_VENDOR_ID`, `ID_MODEL_ID` | the USB device's `idVendor`, `idProduct` |
//! | `ID_SERIAL_SHORT` | its `serial` |
//! | `ID_VENDOR`, `ID_MODEL` | `manufacturer`, `product`, spaces as `_` |
//! | `ID_SERIAL` | `<ID_VENDOR>_<ID_MODEL>[_<ID_SERIAL_SHORT>]` |
//! | `ID_USB_INTERFACE_NUM` | the interface's `bInterfaceNumber` |
//! | `ID_PATH`, `ID_PATH_TAG` | as udev's `path_id` for pci/platform + usb: `pci-0000:00:14.0-usb-0:1.2:1.0` |
//!
//! Hot-plug is heard on a `NETLINK_KOBJECT_UEVENT` socket: the udev group
//! (what a libudev monitor listens to: events after udev has processed them)
//! when udevd runs, the kernel group otherwise. libudev's own monitor type is
//! not `Send`, and the pump must be; the socket is the same thing underneath.
//! Events only wake a re-scan, so their format does not matter beyond a check
//! that they concern the `tty` subsystem.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use tokio::io::unix::AsyncFd;

/// Whether udevd runs on this host.
pub fn udevd_running() -> bool {
    Path::new("/run/udev/control").exists()
}

fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let s = fs::read_to_string(dir.join(name)).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The basename of `dir/subsystem`'s link target (`usb`, `pci`, `platform`).
fn subsystem(dir: &Path) -> Option<String> {
    let t = fs::read_link(dir.join("subsystem")).ok()?;
    Some(t.file_name()?.to_string_lossy().into_owned())
}

/// udev's encoding of strings in `ID_VENDOR`/`ID_MODEL`: blanks become `_`,
/// only printable ASCII is kept.
fn udev_safe(s: &str) -> String {
    s.trim().chars().filter(|c| c.is_ascii_graphic() || *c == ' ').map(|c| if c == ' ' { '_' } else { c }).collect()
}

/// The properties udev would give tty `name`, computed from the sysfs tree
/// at `root` (normally `/sys`). `None` when the tty has no device (virtual
/// consoles, ptys) or the tree is unreadable.
pub fn sysfs_properties(root: &Path, name: &str) -> Option<BTreeMap<String, String>> {
    let class = root.join("class/tty").join(name);
    let dev = fs::canonicalize(class.join("device")).ok()?;
    let top = fs::canonicalize(root.join("devices")).unwrap_or_else(|_| root.join("devices"));
    let mut p = BTreeMap::new();
    p.insert("DEVNAME".to_string(), format!("/dev/{name}"));
    p.insert("SUBSYSTEM".to_string(), "tty".to_string());

    // Climb to the USB device (the first ancestor with idVendor); the
    // directory just below it on the way is the interface.
    let mut usb_dev: Option<PathBuf> = None;
    let mut iface: Option<PathBuf> = None;
    let mut prev: Option<PathBuf> = None;
    let mut cur: Option<&Path> = Some(&dev);
    while let Some(d) = cur {
        if !d.starts_with(&top) || d == top {
            break;
        }
        if d.join("idVendor").exists() {
            usb_dev = Some(d.to_path_buf());
            iface = prev.filter(|i| i.join("bInterfaceNumber").exists());
            break;
        }
        prev = Some(d.to_path_buf());
        cur = d.parent();
    }
    if let Some(u) = &usb_dev {
        p.insert("ID_BUS".into(), "usb".into());
        let vendor_id = read_attr(u, "idVendor");
        let model_id = read_attr(u, "idProduct");
        let vendor = read_attr(u, "manufacturer").map(|s| udev_safe(&s)).or(vendor_id.clone());
        let model = read_attr(u, "product").map(|s| udev_safe(&s)).or(model_id.clone());
        let serial = read_attr(u, "serial").map(|s| udev_safe(&s));
        if let Some(v) = &vendor_id {
            p.insert("ID_VENDOR_ID".into(), v.clone());
        }
        if let Some(v) = &model_id {
            p.insert("ID_MODEL_ID".into(), v.clone());
        }
        if let (Some(v), Some(m)) = (&vendor, &model) {
            p.insert("ID_VENDOR".into(), v.clone());
            p.insert("ID_MODEL".into(), m.clone());
            let mut s = format!("{v}_{m}");
            if let Some(ser) = &serial {
                s.push('_');
                s.push_str(ser);
            }
            p.insert("ID_SERIAL".into(), s);
        }
        if let Some(s) = serial {
            p.insert("ID_SERIAL_SHORT".into(), s);
        }
        if let Some(n) = iface.as_deref().and_then(|i| read_attr(i, "bInterfaceNumber")) {
            p.insert("ID_USB_INTERFACE_NUM".into(), n);
        }
    }
    if let Some(path) = path_id(&dev, &top) {
        let tag: String = path.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
        p.insert("ID_PATH".into(), path);
        p.insert("ID_PATH_TAG".into(), tag);
    }
    Some(p)
}

/// A subset of udev's `path_id`: usb, pci and platform parents.
fn path_id(dev: &Path, top: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut seen_usb = false;
    let mut cur: Option<&Path> = Some(dev);
    while let Some(d) = cur {
        if !d.starts_with(top) || d == top {
            break;
        }
        let name = d.file_name()?.to_string_lossy().into_owned();
        match subsystem(d).as_deref() {
            // The first (deepest) usb device or interface names the port:
            // "1-1.2:1.0" -> "usb-0:1.2:1.0"; the rest of the usb chain,
            // hubs and root hub, adds nothing.
            Some("usb") if !seen_usb => {
                if let Some((_, port)) = name.split_once('-') {
                    parts.push(format!("usb-0:{port}"));
                    seen_usb = true;
                }
            }
            Some("pci") => parts.push(format!("pci-{name}")),
            Some("platform") => parts.push(format!("platform-{name}")),
            _ => {}
        }
        cur = d.parent();
    }
    if parts.is_empty() {
        return None;
    }
    parts.reverse();
    Some(parts.join("-"))
}

fn matches(props: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| props.get(k) == Some(v))
}

/// Device nodes of the ttys under sysfs `root` whose properties match all of
/// `want`, sorted. `dev` is where the nodes live (normally `/dev`).
pub fn sysfs_find(root: &Path, dev: &Path, want: &BTreeMap<String, String>) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(root.join("class/tty")) {
        Ok(e) => e,
        // No tty class left (its last device went away): none match.
        Err(e) if e.kind() == io::ErrorKind::NotFound && root.join("devices").is_dir() => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(props) = sysfs_properties(root, &name) {
            if matches(&props, want) {
                found.push(dev.join(&name));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// The same through libudev: the properties are udev's own.
pub fn udev_find(want: &BTreeMap<String, String>) -> io::Result<Vec<PathBuf>> {
    let mut en = udev::Enumerator::new()?;
    en.match_subsystem("tty")?;
    let mut found = Vec::new();
    for d in en.scan_devices()? {
        let ok = want.iter().all(|(k, v)| d.property_value(k).is_some_and(|x| x.to_string_lossy() == v.as_str()));
        if ok {
            if let Some(node) = d.devnode() {
                found.push(node.to_path_buf());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// What a board's `console.match` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    One(PathBuf),
    /// Nothing matches: the adapter is missing (why, for status).
    Missing(String),
    /// Several match: none is taken (why, naming them, for status).
    Ambiguous(String),
}

/// `want` as a board file says it: `ID_SERIAL_SHORT=A10K1234 ID_PATH=...`.
pub fn describe(want: &BTreeMap<String, String>) -> String {
    want.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The one tty of `found` (what [`find`] gave for `want`), else why not.
pub fn choose(found: Vec<PathBuf>, want: &BTreeMap<String, String>) -> Choice {
    match found.len() {
        0 => Choice::Missing(format!("no tty matches {}", describe(want))),
        1 => Choice::One(found.into_iter().next().unwrap_or_default()),
        _ => {
            let names: Vec<String> = found.iter().map(|p| p.display().to_string()).collect();
            Choice::Ambiguous(format!(
                "{} match {}; add a property to tell them apart",
                names.join(", "),
                describe(want)
            ))
        }
    }
}

/// Finds the ttys matching `want` on this host, by udev or by sysfs.
pub fn find(want: &BTreeMap<String, String>) -> io::Result<Vec<PathBuf>> {
    if udevd_running() {
        udev_find(want)
    } else {
        sysfs_find(Path::new("/sys"), Path::new("/dev"), want)
    }
}

/// A uevent socket: readable when a device was added or removed.
pub struct Uevents {
    fd: AsyncFd<OwnedFd>,
}

impl Uevents {
    /// Listens to udev's group when udevd runs, the kernel's otherwise.
    /// Must be called inside a tokio runtime.
    pub fn open() -> io::Result<Uevents> {
        use nix::sys::socket::{bind, socket, AddressFamily, NetlinkAddr, SockFlag, SockProtocol, SockType};
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            SockProtocol::NetlinkKObjectUEvent,
        )?;
        // Group 1: raw kernel events; group 2: events re-sent by udevd.
        let group = if udevd_running() { 2 } else { 1 };
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, group))?;
        // SAFETY: `fd` is an open socket owned by the OwnedFd moved into the
        // AsyncFd, so it stays open and the same for the AsyncFd's lifetime.
        let fd = unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?;
        Ok(Uevents { fd })
    }

    /// Waits for the next batch of events; true if one of them concerns a tty.
    pub async fn changed(&self) -> io::Result<bool> {
        let mut buf = vec![0u8; 8192];
        let mut tty = false;
        let mut guard = self.fd.readable().await?;
        loop {
            match guard.try_io(|fd| {
                nix::sys::socket::recv(fd.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT)
                    .map_err(io::Error::from)
            }) {
                Ok(Ok(n)) => {
                    let msg = buf.get(..n).unwrap_or_default();
                    tty |= msg.split(|&b| b == 0).any(|f| f == b"SUBSYSTEM=tty");
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                // ENOBUFS: events were lost; a re-scan catches up.
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ENOBUFS) => tty = true,
                Ok(Err(e)) => return Err(e),
                // Drained: report what the batch held.
                Err(_would_block) => return Ok(tty),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn w(p: &Path, name: &str, v: &str) {
        fs::create_dir_all(p).unwrap();
        fs::write(p.join(name), format!("{v}\n")).unwrap();
    }

    /// Builds a fake sysfs: an FTDI (usb-serial, ttyUSB0) and a CDC-ACM
    /// (ttyACM0) adapter under an xHCI controller, plus a virtual tty0.
    fn fake_sysfs() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for s in ["usb", "pci", "usb-serial", "tty"] {
            fs::create_dir_all(r.join("bus").join(s)).unwrap();
        }
        let sub = |d: &Path, s: &str| symlink(r.join("bus").join(s), d.join("subsystem")).unwrap();
        let pci = r.join("devices/pci0000:00/0000:00:14.0");
        fs::create_dir_all(&pci).unwrap();
        sub(&pci, "pci");
        let root_hub = pci.join("usb1");
        w(&root_hub, "idVendor", "1d6b");
        sub(&root_hub, "usb");
        let hub = root_hub.join("1-1");
        w(&hub, "idVendor", "05e3");
        sub(&hub, "usb");
        // FTDI at 1-1.2, interface 1.0, usb-serial port ttyUSB0.
        let ftdi = hub.join("1-1.2");
        w(&ftdi, "idVendor", "0403");
        w(&ftdi, "idProduct", "6001");
        w(&ftdi, "serial", "A10K1234");
        w(&ftdi, "manufacturer", "FTDI");
        w(&ftdi, "product", "FT232R USB UART");
        sub(&ftdi, "usb");
        let fif = ftdi.join("1-1.2:1.0");
        w(&fif, "bInterfaceNumber", "00");
        sub(&fif, "usb");
        let port = fif.join("ttyUSB0");
        fs::create_dir_all(&port).unwrap();
        sub(&port, "usb-serial");
        let tty = port.join("tty/ttyUSB0");
        fs::create_dir_all(&tty).unwrap();
        symlink("../../../ttyUSB0", tty.join("device")).unwrap();
        // CDC-ACM at 1-3, no serial.
        let acm = root_hub.join("1-3");
        w(&acm, "idVendor", "2e8a");
        w(&acm, "idProduct", "000a");
        sub(&acm, "usb");
        let aif = acm.join("1-3:1.0");
        w(&aif, "bInterfaceNumber", "00");
        sub(&aif, "usb");
        let atty = aif.join("tty/ttyACM0");
        fs::create_dir_all(&atty).unwrap();
        symlink("../../../1-3:1.0", atty.join("device")).unwrap();
        // A virtual console: no device link.
        let vt = r.join("devices/virtual/tty/tty0");
        fs::create_dir_all(&vt).unwrap();
        let class = r.join("class/tty");
        fs::create_dir_all(&class).unwrap();
        symlink(
            "../../devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1.2/1-1.2:1.0/ttyUSB0/tty/ttyUSB0",
            class.join("ttyUSB0"),
        )
        .unwrap();
        symlink("../../devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/tty/ttyACM0", class.join("ttyACM0")).unwrap();
        symlink("../../devices/virtual/tty/tty0", class.join("tty0")).unwrap();
        t
    }

    fn want(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn properties_of_a_usb_serial_adapter() {
        let t = fake_sysfs();
        let p = sysfs_properties(t.path(), "ttyUSB0").unwrap();
        assert_eq!(p["DEVNAME"], "/dev/ttyUSB0");
        assert_eq!(p["ID_SERIAL_SHORT"], "A10K1234");
        assert_eq!(p["ID_VENDOR_ID"], "0403");
        assert_eq!(p["ID_MODEL_ID"], "6001");
        assert_eq!(p["ID_SERIAL"], "FTDI_FT232R_USB_UART_A10K1234");
        assert_eq!(p["ID_USB_INTERFACE_NUM"], "00");
        assert_eq!(p["ID_PATH"], "pci-0000:00:14.0-usb-0:1.2:1.0");
        assert_eq!(p["ID_PATH_TAG"], "pci-0000_00_14_0-usb-0_1_2_1_0");
        let a = sysfs_properties(t.path(), "ttyACM0").unwrap();
        assert_eq!(a["ID_PATH"], "pci-0000:00:14.0-usb-0:3:1.0");
        assert_eq!(a["ID_SERIAL"], "2e8a_000a");
        assert!(!a.contains_key("ID_SERIAL_SHORT"));
        assert!(sysfs_properties(t.path(), "tty0").is_none());
        assert!(sysfs_properties(t.path(), "ttyS9").is_none());
    }

    #[test]
    fn find_by_properties() {
        let t = fake_sysfs();
        let dev = Path::new("/dev");
        let f = |kv: &[(&str, &str)]| sysfs_find(t.path(), dev, &want(kv)).unwrap();
        assert_eq!(f(&[("ID_SERIAL_SHORT", "A10K1234")]), [PathBuf::from("/dev/ttyUSB0")]);
        assert_eq!(f(&[("ID_PATH", "pci-0000:00:14.0-usb-0:3:1.0")]), [PathBuf::from("/dev/ttyACM0")]);
        assert_eq!(f(&[("ID_VENDOR_ID", "0403"), ("ID_MODEL_ID", "6001")]), [PathBuf::from("/dev/ttyUSB0")]);
        assert!(f(&[("ID_VENDOR_ID", "0403"), ("ID_MODEL_ID", "6010")]).is_empty());
        assert_eq!(f(&[("ID_BUS", "usb")]).len(), 2);
        assert!(f(&[("ID_SERIAL_SHORT", "nope")]).is_empty());
        assert!(sysfs_find(&t.path().join("missing"), dev, &want(&[])).is_err());
        fs::remove_dir_all(t.path().join("class/tty")).unwrap();
        assert!(f(&[("ID_SERIAL_SHORT", "A10K1234")]).is_empty(), "no tty class: no tty");
    }
}
