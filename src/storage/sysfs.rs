//! Finding a mux's USB device and the disks and SCSI generic nodes below
//! it, from sysfs (the same with or without udevd: the properties are the
//! USB device's own attributes, named as udev names them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A USB device (not an interface) in sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbDevice {
    /// Its canonical sysfs directory.
    pub dir: PathBuf,
    /// `ID_VENDOR_ID`, `ID_MODEL_ID`, `ID_SERIAL_SHORT`, `ID_VENDOR`,
    /// `ID_MODEL`, as udev would set them.
    pub props: BTreeMap<String, String>,
    pub busnum: u32,
    pub devnum: u32,
}

impl UsbDevice {
    /// Its usbfs node (`/dev/bus/usb/BBB/DDD`) under `dev`.
    pub fn usbfs(&self, dev: &Path) -> PathBuf {
        dev.join("bus/usb").join(format!("{:03}", self.busnum)).join(format!("{:03}", self.devnum))
    }
}

fn attr(dir: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(name)).ok().map(|s| s.trim().to_string())
}

/// Every USB device under `sys` (normally `/sys`).
pub fn usb_devices(sys: &Path) -> Vec<UsbDevice> {
    let Ok(entries) = std::fs::read_dir(sys.join("bus/usb/devices")) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.contains(':') {
            continue; // an interface
        }
        let Ok(dir) = e.path().canonicalize() else { continue };
        let (Some(busnum), Some(devnum)) =
            (attr(&dir, "busnum").and_then(|s| s.parse().ok()), attr(&dir, "devnum").and_then(|s| s.parse().ok()))
        else {
            continue;
        };
        let mut props = BTreeMap::new();
        for (key, file) in [
            ("ID_VENDOR_ID", "idVendor"),
            ("ID_MODEL_ID", "idProduct"),
            ("ID_SERIAL_SHORT", "serial"),
            ("ID_VENDOR", "manufacturer"),
            ("ID_MODEL", "product"),
        ] {
            if let Some(v) = attr(&dir, file) {
                let v = if key == "ID_VENDOR" || key == "ID_MODEL" { v.replace(' ', "_") } else { v };
                props.insert(key.to_string(), v);
            }
        }
        out.push(UsbDevice { dir, props, busnum, devnum });
    }
    out.sort_by(|a, b| a.dir.cmp(&b.dir));
    out
}

/// The USB devices whose properties include every one of `want`.
pub fn matching(sys: &Path, want: &BTreeMap<String, String>) -> Vec<UsbDevice> {
    usb_devices(sys).into_iter().filter(|d| want.iter().all(|(k, v)| d.props.get(k) == Some(v))).collect()
}

/// Nodes (under `dev`) of `class` (`block`, `scsi_generic`) whose device
/// lies below the sysfs directory `below`; for `block`, whole disks only.
pub fn nodes_below(sys: &Path, dev: &Path, class: &str, below: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(sys.join("class").join(class)) else { return Vec::new() };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| class != "block" || !e.path().join("partition").exists())
        .filter(|e| e.path().canonicalize().is_ok_and(|p| p.starts_with(below)))
        .map(|e| dev.join(e.file_name()))
        .collect();
    out.sort();
    out
}

/// `props` as a board file writes them, for messages.
pub fn describe(props: &BTreeMap<String, String>) -> String {
    props.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
pub(crate) mod fake {
    //! A sysfs tree with USB devices, disks and SCSI generic nodes, as the
    //! kernel lays them out (devices under /sys/devices, links in
    //! bus/usb/devices and class/*).
    use std::path::{Path, PathBuf};

    pub struct Tree(pub tempfile::TempDir);

    impl Tree {
        pub fn new() -> Tree {
            Tree(tempfile::tempdir().unwrap())
        }

        pub fn sys(&self) -> PathBuf {
            self.0.path().join("sys")
        }

        /// A USB device at `path` (like `1-1.2`) below `parent` (a sysfs
        /// dir relative to /sys/devices), with its attributes.
        pub fn usb(&self, parent: &str, name: &str, attrs: &[(&str, &str)]) -> PathBuf {
            let dir = self.sys().join("devices").join(parent).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            for (k, v) in attrs {
                std::fs::write(dir.join(k), format!("{v}\n")).unwrap();
            }
            let links = self.sys().join("bus/usb/devices");
            std::fs::create_dir_all(&links).unwrap();
            std::os::unix::fs::symlink(&dir, links.join(name)).unwrap();
            dir
        }

        /// A class device (`block/sdb`, `scsi_generic/sg1`) below `under`.
        pub fn class_dev(&self, under: &Path, class: &str, name: &str) {
            let dir = under.join("1-1:1.0/host0/target0:0:0/0:0:0:0").join(class).join(name);
            std::fs::create_dir_all(&dir).unwrap();
            let links = self.sys().join("class").join(class);
            std::fs::create_dir_all(&links).unwrap();
            std::os::unix::fs::symlink(&dir, links.join(name)).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::Tree;
    use super::*;

    #[test]
    fn devices_are_found_by_their_properties_and_their_nodes_below_them() {
        let t = Tree::new();
        let hub = "pci0000:00/0000:00:14.0/usb1";
        let mux = t.usb(
            hub,
            "1-1",
            &[
                ("busnum", "1"),
                ("devnum", "7"),
                ("idVendor", "0424"),
                ("idProduct", "4041"),
                ("serial", "000000001234"),
                ("manufacturer", "Pengutronix"),
                ("product", "usb-sd-mux_rev4"),
            ],
        );
        t.class_dev(&mux, "block", "sdb");
        t.class_dev(&mux, "scsi_generic", "sg1");
        let other = t.usb(hub, "1-2", &[("busnum", "1"), ("devnum", "8"), ("serial", "999")]);
        t.class_dev(&other, "block", "sdc");
        let want: BTreeMap<String, String> = [("ID_SERIAL_SHORT".to_string(), "000000001234".to_string())].into();
        let found = matching(&t.sys(), &want);
        assert_eq!(found.len(), 1);
        let d = &found[0];
        assert_eq!(d.props["ID_MODEL"], "usb-sd-mux_rev4");
        assert_eq!(d.usbfs(Path::new("/dev")), Path::new("/dev/bus/usb/001/007"));
        let dev = Path::new("/dev");
        assert_eq!(nodes_below(&t.sys(), dev, "block", &d.dir), vec![PathBuf::from("/dev/sdb")]);
        assert_eq!(nodes_below(&t.sys(), dev, "scsi_generic", &d.dir), vec![PathBuf::from("/dev/sg1")]);
        assert!(matching(&t.sys(), &[("ID_SERIAL_SHORT".to_string(), "nope".to_string())].into()).is_empty());
    }
}
