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
        // The class device's link to its device, as the kernel makes it
        // (what the sysfs fallback climbs from).
        let device = if acm { format!("{}:1.0", self.usb) } else { self.tty.to_string() };
        e.push_str(&format!("L: device=../../../{device}\n"));
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

/// libumockdev's testbed, opened at run time (Debian's libumockdev0): the
/// devices and uevents of the hot-plug test. Only in a process that runs
/// under `umockdev-wrapper` (its preload library redirects /sys, /dev and
/// the uevent socket into the testbed).
mod testbed {
    use std::ffi::{c_char, c_int, c_void, CString};

    type New = unsafe extern "C" fn() -> *mut c_void;
    type AddFromString = unsafe extern "C" fn(*mut c_void, *const c_char, *mut *mut c_void) -> c_int;
    type WithPath = unsafe extern "C" fn(*mut c_void, *const c_char);
    type Uevent = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char);
    type DevFd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
    type HandlerNew = unsafe extern "C" fn() -> *mut c_void;
    type Attach = unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_void, *mut *mut c_void) -> c_int;
    type Connect =
        unsafe extern "C" fn(*mut c_void, *const c_char, *const c_void, *mut c_void, *const c_void, c_int) -> u64;
    type Execute = unsafe extern "C" fn(*mut c_void, *mut c_int, *mut *mut c_void) -> c_int;
    type Complete = unsafe extern "C" fn(*mut c_void, std::ffi::c_long, c_int);

    /// `execute` and `complete` of libumockdev, for the ioctl handler.
    static CLIENT: std::sync::OnceLock<(Execute, Complete)> = std::sync::OnceLock::new();

    /// The handler of every ioctl on an adapter's tty: done on the pty
    /// itself, as the kernel's tty layer would (umockdev's default handler
    /// knows none of a serial port's, TIOCEXCL first).
    unsafe extern "C" fn pass_through(_handler: *mut c_void, client: *mut c_void, _data: *mut c_void) -> c_int {
        let Some((execute, complete)) = CLIENT.get() else { return 0 };
        let mut errno: c_int = 0;
        // SAFETY: `client` is the live UMockdevIoctlClient of this signal
        // emission; a NULL GError location means "do not report".
        let ret = unsafe { execute(client, &mut errno, std::ptr::null_mut()) };
        // SAFETY: as above; the ioctl is being processed, not completed yet.
        unsafe { complete(client, std::ffi::c_long::from(ret), errno) };
        1
    }

    pub struct Testbed {
        tb: *mut c_void,
        add: AddFromString,
        remove: WithPath,
        uevent: Uevent,
        dev_fd: DevFd,
        handler: *mut c_void,
        attach: Attach,
    }

    fn sym<T: Copy>(lib: *mut c_void, name: &str) -> T {
        let n = CString::new(name).unwrap();
        // SAFETY: `lib` is a handle from dlopen and `n` a valid C string.
        let p = unsafe { libc::dlsym(lib, n.as_ptr()) };
        assert!(!p.is_null(), "libumockdev has no {name}");
        assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
        // SAFETY: T is the function pointer type of the C declaration of
        // `name` in umockdev.h, of the size of a pointer (checked above).
        unsafe { std::mem::transmute_copy(&p) }
    }

    impl Testbed {
        pub fn new() -> Testbed {
            let so = CString::new("libumockdev.so.0").unwrap();
            // SAFETY: a valid C string; the library stays loaded for the process.
            let lib = unsafe { libc::dlopen(so.as_ptr(), libc::RTLD_NOW) };
            assert!(!lib.is_null(), "libumockdev.so.0 (Debian's libumockdev0, with umockdev)");
            let new: New = sym(lib, "umockdev_testbed_new");
            // SAFETY: umockdev_testbed_new takes nothing and returns a new testbed.
            let tb = unsafe { new() };
            assert!(!tb.is_null());
            let _ = CLIENT.set((sym(lib, "umockdev_ioctl_client_execute"), sym(lib, "umockdev_ioctl_client_complete")));
            let handler_new: HandlerNew = sym(lib, "umockdev_ioctl_base_new");
            // SAFETY: umockdev_ioctl_base_new takes nothing and returns a new handler.
            let handler = unsafe { handler_new() };
            let so = CString::new("libgobject-2.0.so.0").unwrap();
            // SAFETY: a valid C string; libumockdev has loaded GObject already.
            let gobject = unsafe { libc::dlopen(so.as_ptr(), libc::RTLD_NOW) };
            assert!(!gobject.is_null());
            let connect: Connect = sym(gobject, "g_signal_connect_data");
            let signal = CString::new("handle-ioctl").unwrap();
            // SAFETY: `handler` is a live UMockdevIoctlBase, `pass_through`
            // has the signature of its handle-ioctl signal, no data and no
            // destroy notify.
            let id = unsafe {
                connect(
                    handler,
                    signal.as_ptr(),
                    pass_through as *const c_void,
                    std::ptr::null_mut(),
                    std::ptr::null(),
                    0,
                )
            };
            assert!(id > 0, "handle-ioctl connected");
            Testbed {
                handler,
                attach: sym(lib, "umockdev_testbed_attach_ioctl"),
                tb,
                add: sym(lib, "umockdev_testbed_add_from_string"),
                remove: sym(lib, "umockdev_testbed_remove_device"),
                uevent: sym(lib, "umockdev_testbed_uevent"),
                dev_fd: sym(lib, "umockdev_testbed_get_dev_fd"),
            }
        }

        /// Adds the devices of a `*.umockdev` text.
        pub fn add(&self, text: &str) {
            let t = CString::new(text).unwrap();
            // SAFETY: a live testbed and a valid C string; a NULL error
            // pointer means "do not report", as GLib allows.
            let ok = unsafe { (self.add)(self.tb, t.as_ptr(), std::ptr::null_mut()) };
            assert!(ok != 0, "umockdev refused the device:\n{text}");
        }

        /// Serial ports' ioctls on `devnode` go to its pty (see [`pass_through`]).
        pub fn pass_ioctls(&self, devnode: &str) {
            let d = CString::new(devnode).unwrap();
            // SAFETY: a live testbed and handler and a valid C string.
            let ok = unsafe { (self.attach)(self.tb, d.as_ptr(), self.handler, std::ptr::null_mut()) };
            assert!(ok != 0, "umockdev took no ioctl handler for {devnode}");
        }

        /// Sends a uevent (`add`, `remove`) for the device at `syspath`.
        pub fn uevent(&self, syspath: &str, action: &str) {
            let (p, a) = (CString::new(syspath).unwrap(), CString::new(action).unwrap());
            // SAFETY: a live testbed and valid C strings.
            unsafe { (self.uevent)(self.tb, p.as_ptr(), a.as_ptr()) }
        }

        /// Removes the device at `syspath` (and its node).
        pub fn remove(&self, syspath: &str) {
            let p = CString::new(syspath).unwrap();
            // SAFETY: a live testbed and a valid C string.
            unsafe { (self.remove)(self.tb, p.as_ptr()) }
        }

        /// The board's end of an emulated tty (the testbed keeps it open).
        pub fn master(&self, devnode: &str) -> std::os::fd::BorrowedFd<'_> {
            let p = CString::new(devnode).unwrap();
            // SAFETY: a live testbed and a valid C string.
            let fd = unsafe { (self.dev_fd)(self.tb, p.as_ptr()) };
            assert!(fd >= 0, "no emulated tty at {devnode}");
            // SAFETY: the testbed keeps `fd` open for as long as it lives,
            // which outlives the borrow of `self`.
            unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
        }
    }
}

/// Runs test `name` of this file again under `umockdev-wrapper`; true in
/// the inner run.
fn under_umockdev_wrapper(name: &str) -> bool {
    if std::env::var_os("BL_UMOCKDEV_INNER").is_some() {
        return true;
    }
    let o = Command::new("umockdev-wrapper")
        .arg(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("BL_UMOCKDEV_INNER", "1")
        .output()
        .expect("umockdev-wrapper (Debian's umockdev, installed by make deps)");
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success() && out.contains("1 passed"), "under umockdev-wrapper:\n{out}");
    println!("under umockdev-wrapper:\n{out}");
    false
}

/// Where udev puts an adapter's tty in sysfs.
fn syspath(a: &Adapter) -> String {
    format!("/sys/devices/pci0000:00/0000:00:14.0/usb1/{u}/{u}:1.0/{t}/tty/{t}", u = a.usb, t = a.tty)
}

/// Waits up to 5 s for `f` of the console.
async fn until(c: &boardlab::console::Console, what: &str, f: impl Fn(&boardlab::console::Console) -> bool) {
    let t0 = std::time::Instant::now();
    while !f(c) {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "{what}: {:?}", c.status());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Whether the console is attached to `dev`.
fn on(c: &boardlab::console::Console, dev: &str) -> bool {
    let st = c.status();
    st.state.as_str() == "attached" && st.device.as_deref() == Some(dev)
}

/// An FTDI adapter unplugged and plugged back in, into another port, where
/// it comes up as another ttyUSBn: labd's console pump, told by uevents,
/// lets go of the old device (which never failed a read: an emulated tty
/// does not hang up) and finds the adapter again by its serial number, and
/// its sessions carry on. With no udevd here, the pump finds ttys through
/// the sysfs fallback, in umockdev's sysfs, and hears umockdev's uevents
/// on its netlink socket.
#[test]
fn an_adapter_plugged_back_as_another_tty_is_found_again_by_its_properties() {
    use boardlab::config::ConsoleSource;
    use boardlab::console::{Console, ConsoleSettings};
    use std::time::{Duration, Instant};

    if !under_umockdev_wrapper("an_adapter_plugged_back_as_another_tty_is_found_again_by_its_properties") {
        return;
    }
    let tb = testbed::Testbed::new();
    let first = Adapter { ..ADAPTERS[0] };
    let again = Adapter { tty: "ttyUSB4", usb: "1-7", ..ADAPTERS[0] };
    tb.add(&first.umockdev());
    tb.pass_ioctls("/dev/ttyUSB0");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let logs = tempfile::tempdir().unwrap();
        let c = Console::start(ConsoleSettings {
            board: "b1".into(),
            source: ConsoleSource::Match(want(&[("ID_SERIAL_SHORT", "A10K1234")])),
            baud: 115_200,
            log_dir: logs.path().to_path_buf(),
            log_max_bytes: 1 << 20,
            log_keep: 1,
            metrics: Default::default(),
        });
        until(&c, "attached to ttyUSB0", |c| on(c, "/dev/ttyUSB0")).await;
        let mut s = c.attach(false);
        nix::unistd::write(tb.master("/dev/ttyUSB0"), b"before").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), s.output.recv()).await.unwrap().unwrap();
        assert_eq!(&got[..], b"before");

        // Unplugged: the uevent, then the device is gone.
        tb.uevent(&syspath(&first), "remove");
        tb.remove(&syspath(&first));
        until(&c, "missing", |c| c.status().state.as_str() == "missing").await;
        // Plugged into another port: ttyUSB4, another ID_PATH, the same serial.
        tb.add(&again.umockdev());
        tb.pass_ioctls("/dev/ttyUSB4");
        tb.uevent(&syspath(&again), "add");
        let t0 = Instant::now();
        until(&c, "attached to ttyUSB4", |c| on(c, "/dev/ttyUSB4")).await;
        println!("re-attached to /dev/ttyUSB4 {:?} after its uevent", t0.elapsed());
        nix::unistd::write(tb.master("/dev/ttyUSB4"), b"after").unwrap();
        let mut seen = Vec::new();
        while !seen.windows(5).any(|w| w == b"after") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), s.output.recv()).await.unwrap().unwrap();
            seen.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(text.contains("vanished") && text.contains("back at"), "the session saw the gap: {text}");
    });
}
