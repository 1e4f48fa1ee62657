//! Serial adapters found through libudev, for real: Debian's umockdev
//! feeds recorded devices to libudev (no udevd and no USB here), and
//! labd's resolver (`console::resolve::udev_find`, what it uses where
//! udevd runs) must find each board's adapter by its `console.match`.
//!
//! The test runs itself again under `umockdev-run` with the devices
//! below: the outer run makes the device files and checks the inner
//! run's exit, the inner run (`BL_UMOCKDEV_INNER` set) asks libudev.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use boardlab::console::resolve::{choose, udev_find, Choice};

/// A USB serial adapter as udev records it: the tty, its usb-serial port
/// (for drivers that have one), the interface and the USB device.
struct Adapter {
    tty: &'static str,
    /// `1-2` (bus 1, port 2): where it is plugged.
    usb: &'static str,
    driver: &'static str,
    vendor: &'static str,
    product: &'static str,
    serial: Option<&'static str>,
    model: &'static str,
}

impl Adapter {
    fn umockdev(&self) -> String {
        let iface = format!("/devices/pci0000:00/0000:00:14.0/usb1/{u}/{u}:1.0", u = self.usb);
        let acm = self.tty.starts_with("ttyACM");
        let tty_dir =
            if acm { format!("{iface}/tty/{}", self.tty) } else { format!("{iface}/{t}/tty/{t}", t = self.tty) };
        let (major, minor) =
            if acm { (166, 0) } else { (188, self.tty.trim_start_matches("ttyUSB").parse().unwrap_or(0)) };
        let port = self.usb.split_once('-').map(|(_, p)| p).unwrap_or("1");
        let path = format!("pci-0000:00:14.0-usb-0:{port}:1.0");
        let mut e = format!(
            "P: {tty_dir}\nN: {tty}\nE: DEVNAME=/dev/{tty}\nE: MAJOR={major}\nE: MINOR={minor}\nE: SUBSYSTEM=tty\n\
             E: ID_BUS=usb\nE: ID_VENDOR_ID={v}\nE: ID_MODEL_ID={p}\nE: ID_MODEL={model}\nE: ID_PATH={path}\n\
             E: ID_USB_DRIVER={d}\nA: dev={major}:{minor}\n",
            tty = self.tty,
            v = self.vendor,
            p = self.product,
            model = self.model,
            d = self.driver,
        );
        if let Some(s) = self.serial {
            e.push_str(&format!("E: ID_SERIAL_SHORT={s}\n"));
        }
        if !acm {
            e.push_str(&format!(
                "\nP: {iface}/{t}\nE: DRIVER={d}\nE: SUBSYSTEM=usb-serial\n",
                t = self.tty,
                d = self.driver
            ));
        }
        e.push_str(&format!(
            "\nP: {iface}\nE: DEVTYPE=usb_interface\nE: DRIVER={d}\nE: SUBSYSTEM=usb\nA: bInterfaceNumber=00\n",
            d = self.driver
        ));
        let dev = iface.rsplit_once('/').map(|(d, _)| d).unwrap_or(&iface);
        e.push_str(&format!(
            "\nP: {dev}\nE: DEVTYPE=usb_device\nE: SUBSYSTEM=usb\nA: idVendor={v}\nA: idProduct={p}\n",
            v = self.vendor,
            p = self.product
        ));
        if let Some(s) = self.serial {
            e.push_str(&format!("A: serial={s}\n"));
        }
        e
    }
}

/// The common kinds: FTDI, CP210x, two identical CH340s (no serial), and a
/// board's own CDC ACM port.
const ADAPTERS: [Adapter; 5] = [
    Adapter {
        tty: "ttyUSB0",
        usb: "1-2",
        driver: "ftdi_sio",
        vendor: "0403",
        product: "6001",
        serial: Some("A10K1234"),
        model: "FT232R_USB_UART",
    },
    Adapter {
        tty: "ttyUSB1",
        usb: "1-3",
        driver: "cp210x",
        vendor: "10c4",
        product: "ea60",
        serial: Some("0001"),
        model: "CP2102_USB_to_UART_Bridge_Controller",
    },
    Adapter {
        tty: "ttyUSB2",
        usb: "1-4",
        driver: "ch341",
        vendor: "1a86",
        product: "7523",
        serial: None,
        model: "USB_Serial",
    },
    Adapter {
        tty: "ttyUSB3",
        usb: "1-5",
        driver: "ch341",
        vendor: "1a86",
        product: "7523",
        serial: None,
        model: "USB_Serial",
    },
    Adapter {
        tty: "ttyACM0",
        usb: "1-6",
        driver: "cdc_acm",
        vendor: "2e8a",
        product: "000a",
        serial: Some("E6614103E7"),
        model: "Pico",
    },
];

fn want(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn one(pairs: &[(&str, &str)]) -> Choice {
    let w = want(pairs);
    choose(udev_find(&w).expect("libudev lists ttys"), &w)
}

#[test]
fn serial_adapters_are_found_by_their_udev_properties() {
    if std::env::var_os("BL_UMOCKDEV_INNER").is_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("umockdev-run");
        for a in &ADAPTERS {
            let f = dir.path().join(format!("{}.umockdev", a.tty));
            std::fs::write(&f, a.umockdev()).unwrap();
            cmd.arg("-d").arg(f);
        }
        let me = std::env::current_exe().unwrap();
        let o = cmd
            .arg("--")
            .arg(me)
            .args(["serial_adapters_are_found_by_their_udev_properties", "--exact", "--nocapture", "--test-threads=1"])
            .env("BL_UMOCKDEV_INNER", "1")
            .output()
            .expect("umockdev-run (Debian's umockdev, installed by make deps)");
        let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert!(o.status.success() && out.contains("1 passed"), "under umockdev-run:\n{out}");
        return;
    }
    let dev = |p: &str| Choice::One(PathBuf::from(p));
    // By serial number, the usual way.
    assert_eq!(one(&[("ID_SERIAL_SHORT", "A10K1234")]), dev("/dev/ttyUSB0"));
    assert_eq!(one(&[("ID_SERIAL_SHORT", "0001"), ("ID_VENDOR_ID", "10c4")]), dev("/dev/ttyUSB1"));
    assert_eq!(one(&[("ID_SERIAL_SHORT", "E6614103E7")]), dev("/dev/ttyACM0"));
    // By vendor and model.
    assert_eq!(one(&[("ID_VENDOR_ID", "0403"), ("ID_MODEL_ID", "6001")]), dev("/dev/ttyUSB0"));
    // Two identical adapters without serials: told apart by where they
    // are plugged (ID_PATH), and refused, naming both, when not.
    assert_eq!(one(&[("ID_VENDOR_ID", "1a86"), ("ID_PATH", "pci-0000:00:14.0-usb-0:4:1.0")]), dev("/dev/ttyUSB2"));
    assert_eq!(one(&[("ID_VENDOR_ID", "1a86"), ("ID_PATH", "pci-0000:00:14.0-usb-0:5:1.0")]), dev("/dev/ttyUSB3"));
    match one(&[("ID_VENDOR_ID", "1a86"), ("ID_MODEL_ID", "7523")]) {
        Choice::Ambiguous(why) => assert!(
            why.contains("/dev/ttyUSB2") && why.contains("/dev/ttyUSB3") && why.contains("tell them apart"),
            "{why}"
        ),
        other => panic!("an ambiguous match was taken: {other:?}"),
    }
    // Nothing matches: missing, saying what was looked for.
    match one(&[("ID_SERIAL_SHORT", "NOPE")]) {
        Choice::Missing(why) => assert!(why.contains("ID_SERIAL_SHORT=NOPE"), "{why}"),
        other => panic!("{other:?}"),
    }
}
