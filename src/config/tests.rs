//! Validation tests: a good configuration, then one field broken at a
//! time, with the exact error.

use super::*;
use crate::config::jail::Limits;

const LAB: &str = r#"
[daemon]
socket = "/run/boardlab/labd.sock"
state = "/var/lib/boardlab/state.db"
admins = ["alice"]
jail = "none"

[lease]
default = "4h"
max = "1d"

[switches.poe1]
host = "192.0.2.10:161"
community = "private"
timeout = "1s"
retries = 1
"#;

const BOARD: &str = r#"name  = "rockpro64-1"
class = "rockpro64"
power   = { switch = "poe1", port = 5 }
console = { match = { ID_SERIAL_SHORT = "A10K1234" }, baud = 1500000 }
network = { vlan = 101, trunk = "eth1" }
power_on_claim = true
"#;

fn dir_with(lab: &str, boards: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("lab.toml"), lab).unwrap();
    std::fs::create_dir(d.path().join("boards.d")).unwrap();
    for (n, t) in boards {
        std::fs::write(d.path().join("boards.d").join(n), t).unwrap();
    }
    d
}

fn errs(lab: &str, boards: &[(&str, &str)]) -> Vec<String> {
    let d = dir_with(lab, boards);
    match Config::load(d.path()) {
        Ok(_) => vec![],
        Err(e) => {
            e.0.iter()
                .map(|e| format!("{}:{}: {}", e.file.file_name().unwrap().to_string_lossy(), e.line, e.message))
                .collect()
        }
    }
}

#[test]
fn good_config_loads() {
    let d = dir_with(LAB, &[("a.toml", BOARD)]);
    let c = Config::load(d.path()).unwrap();
    assert_eq!(c.boards.len(), 1);
    let b = &c.boards[0];
    assert_eq!(b.port, 5);
    assert_eq!(b.group, 1);
    assert!(b.power_on_claim);
    assert_eq!(b.network, Some(Network::Vlan { vlan: 101, trunk: "eth1".into() }));
    assert_eq!(c.lease.max, Duration::from_secs(86400));
    assert!(c.daemon.admins.contains("alice"));
    assert_eq!(c.daemon.connections_per_user, DEFAULT_CONNECTIONS_PER_USER);
    assert_eq!(c.daemon.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(c.daemon.idle_timeout, DEFAULT_IDLE_TIMEOUT);
}

#[test]
fn connection_limits() {
    let lab = LAB.replacen(
        "[daemon]\n",
        "[daemon]\nconnections_per_user = 8\nmax_connections = 100\nidle_timeout = \"30s\"\n",
        1,
    );
    let c = Config::load(dir_with(&lab, &[("a.toml", BOARD)]).path()).unwrap();
    assert_eq!((c.daemon.connections_per_user, c.daemon.max_connections), (8, 100));
    assert_eq!(c.daemon.idle_timeout, Duration::from_secs(30));
    let lab = LAB.replacen("[daemon]\n", "[daemon]\nconnections_per_user = 0\n", 1);
    let e = errs(&lab, &[("a.toml", BOARD)]);
    assert_eq!(e, vec!["lab.toml:3: daemon.connections_per_user (0) must be between 1 and 1048576".to_string()]);
}

#[test]
fn unknown_key_is_an_error_with_line() {
    let bad = BOARD.replace("power_on_claim = true", "power_on_claim = true\ncolour = \"red\"");
    let e = errs(LAB, &[("a.toml", &bad)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("a.toml:7: unknown field `colour`"), "{e:?}");
}

#[test]
fn every_mistake_in_a_file_is_reported_not_only_the_first() {
    let bad = BOARD
        .replace("power_on_claim = true", "power_on_claim = \"yes\"\ncolour = \"red\"")
        .replace("class = \"rockpro64\"", "class = 7");
    let e = errs(LAB, &[("a.toml", &bad)]);
    assert_eq!(e.len(), 3, "{e:?}");
    assert!(e[0].starts_with("a.toml:2: invalid type: integer `7`, expected a string"), "{e:?}");
    assert!(e[1].starts_with("a.toml:6: invalid type: string \"yes\", expected a boolean"), "{e:?}");
    assert!(e[2].starts_with("a.toml:7: unknown field `colour`"), "{e:?}");
    // A syntax error ends the list: what follows it is not read.
    let broken = bad.replace("name  = \"rockpro64-1\"", "name  = \"rockpro64-1");
    let e = errs(LAB, &[("a.toml", &broken)]);
    assert_eq!(e.len(), 1, "{e:?}");
}

#[test]
fn unknown_switch_names_the_line_and_known_switches() {
    let bad = BOARD.replace("switch = \"poe1\"", "switch = \"poe9\"");
    let e = errs(LAB, &[("a.toml", &bad)]);
    assert_eq!(e, vec!["a.toml:3: power.switch \"poe9\" is not a switch in lab.toml (known: poe1)".to_string()]);
}

#[test]
fn every_error_is_reported() {
    let bad1 = BOARD.replace("port = 5", "port = 0");
    let bad2 = BOARD.replace("rockpro64-1", "rock pro").replace("vlan = 101", "vlan = 5000");
    let lab = LAB.replace("max = \"1d\"", "max = \"1h\"");
    let e = errs(&lab, &[("a.toml", &bad1), ("b.toml", &bad2)]);
    assert!(e.contains(&"lab.toml:9: lease.default (4h) is longer than lease.max (1h)".to_string()), "{e:?}");
    assert!(e.contains(&"a.toml:3: power.port (0) must be a positive port number".to_string()), "{e:?}");
    assert!(e.iter().any(|l| l.starts_with("b.toml:1: board name \"rock pro\"")), "{e:?}");
    assert!(e.contains(&"b.toml:5: network.vlan (5000) must be between 1 and 4094".to_string()), "{e:?}");
}

#[test]
fn duplicate_names_and_ports_are_refused() {
    let other = BOARD.replace("vlan = 101", "vlan = 102");
    let e = errs(LAB, &[("a.toml", BOARD), ("b.toml", &other)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("b.toml:1: board name \"rockpro64-1\" is already used by"), "{e:?}");
    let other = BOARD.replace("rockpro64-1", "rockpro64-2").replace("vlan = 101", "vlan = 102");
    let e = errs(LAB, &[("a.toml", BOARD), ("b.toml", &other)]);
    assert_eq!(
        e,
        vec!["b.toml:3: switch \"poe1\" group 1 port 5 is already the power port of board \"rockpro64-1\"".to_string()]
    );
    let other = BOARD.replace("rockpro64-1", "rockpro64-2").replace("port = 5", "port = 6");
    let e = errs(LAB, &[("a.toml", BOARD), ("b.toml", &other)]);
    assert_eq!(e, vec!["b.toml:5: network link \"eth1.101\" is already used by board \"rockpro64-1\"".to_string()]);
}

#[test]
fn one_mistake_in_lab_toml_is_one_error_and_boards_are_not_blamed_for_it() {
    let typo = LAB.replace("[lease]", "[lease]\ndefualt = \"4h\"");
    let b2 = BOARD.replace("rockpro64-1", "rockpro64-2").replace("port = 5", "port = 6").replace("101", "102");
    let e = errs(&typo, &[("a.toml", BOARD), ("b.toml", &b2)]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("lab.toml:9: unknown field `defualt`"), "{e:?}");
}

#[test]
fn config_names_a_file_or_a_stray_board_file() {
    let d = dir_with(LAB, &[("a.toml", BOARD), ("notes.txt", "remember the milk"), (".hidden", "")]);
    let cfg = Config::load(d.path()).unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].ends_with("boards.d/notes.txt: not read (board files end in .toml)"), "{:?}", cfg.warnings);
    let e = Config::load(&d.path().join("lab.toml")).unwrap_err().to_string();
    assert!(
        e.contains("is a file: --config takes the directory that holds lab.toml and boards.d")
            && e.contains(&format!("(--config {})", d.path().display())),
        "{e}"
    );
}

#[test]
fn jail_section_defaults_and_values() {
    let d = dir_with(LAB, &[("a.toml", BOARD)]);
    let c = Config::load(d.path()).unwrap();
    assert_eq!(c.jail.settings.pool.to_string(), "10.240.0.0/16");
    assert_eq!(c.jail.keys_dir, d.path().join("keys.d"));
    assert_eq!(c.jail.settings.uplink, Uplink::Routed);
    let lab = format!(
        "{LAB}\n[jail]\nroot_dir = \"/srv/jails\"\npool = \"10.9.0.0/24\"\nuplink = \"macvlan\"\nmacvlan_parent = \"eth0\"\nuid_base = 500000\nkeep_host_key = true\nnat_interface = \"wan0\"\n"
    );
    let d = dir_with(&lab, &[("a.toml", BOARD)]);
    let c = Config::load(d.path()).unwrap();
    assert_eq!(c.jail.settings.uplink, Uplink::Macvlan { parent: "eth0".into() });
    assert_eq!(c.jail.settings.uid_base, 500_000);
    assert!(c.jail.keep_host_key);
    let s = c.jail.settings.clone();
    assert_eq!(s.root_dir, PathBuf::from("/srv/jails"));
    assert_eq!(s.nat_interface.as_deref(), Some("wan0"));
    assert_eq!(s.nfsroot_size, 8 << 30);
    assert_eq!(s.data_size, 4 << 30);
    assert_eq!(s.limits, Limits::default());
    assert!(s.deny_out.is_empty());
    let d = dir_with(
        &format!(
            "{LAB}\n[jail]\nnfsroot_size = \"512M\"\ndata_size = \"1G\"\npids_max = 300\nmemory_max = \"2G\"\ncpu_weight = 20\nconnections_max = 100\ndeny_out = [\"192.168.0.0/16\", \"fd00::/8\"]\n"
        ),
        &[("a.toml", BOARD)],
    );
    let s = Config::load(d.path()).unwrap().jail.settings;
    assert_eq!((s.nfsroot_size, s.data_size), (512 << 20, 1 << 30));
    assert_eq!(s.limits, Limits { pids_max: 300, memory_max: 2 << 30, cpu_weight: 20, connections_max: 100 });
    let d = dir_with(&format!("{LAB}\n[jail]\nparallel_builds = 8\n"), &[("a.toml", BOARD)]);
    assert_eq!(Config::load(d.path()).unwrap().jail.parallel_builds, 8);
    let e = errs(&format!("{LAB}\n[jail]\nparallel_builds = 0\n"), &[("a.toml", BOARD)]);
    assert_eq!(e, vec!["lab.toml:19: jail.parallel_builds (0) must be between 1 and 256".to_string()]);
    assert_eq!(s.deny_out, vec!["192.168.0.0/16".parse().unwrap(), "fd00::/8".parse::<ipnet::IpNet>().unwrap()]);
}

#[test]
fn ipv6_pool_is_validated() {
    let with = |extra: &str| errs(&format!("{LAB}\n[jail]\n{extra}\n"), &[]);
    let d = dir_with(&format!("{LAB}\n[jail]\nipv6_pool = \"2001:db8:4200::/48\"\n"), &[("a.toml", BOARD)]);
    let v6 = Config::load(d.path()).unwrap().jail.settings.ipv6.unwrap();
    assert_eq!(v6.pool, "2001:db8:4200::/48".parse::<ipnet::Ipv6Net>().unwrap());
    // The cool-down is at least the longest lease (24 h by default) and
    // the certificates' clock skew (5 min), and the second rounded up.
    assert_eq!(v6.reuse_after, std::time::Duration::from_secs(86400 + 300 + 1));
    assert_eq!(v6.fresh_per_user, 4);
    let d = dir_with(
        &format!("{LAB}\n[jail]\nipv6_pool = \"2001:db8:4200::/48\"\nipv6_cooldown = \"30d\"\n"),
        &[("a.toml", BOARD)],
    );
    let v6 = Config::load(d.path()).unwrap().jail.settings.ipv6.unwrap();
    assert_eq!(v6.reuse_after, std::time::Duration::from_secs(30 * 86400));
    assert_eq!(Config::load(dir_with(LAB, &[("a.toml", BOARD)]).path()).unwrap().jail.settings.ipv6, None);
    assert_eq!(
        with("ipv6_pool = \"2001:db8:4200::/64\""),
        vec!["lab.toml:19: jail.ipv6_pool (2001:db8:4200::/64) must be a /40 to /60: each claim gets a /64 of it, at random".to_string()]
    );
    assert_eq!(
        with("ipv6_pool = \"2001:db8:4200::1/48\""),
        vec!["lab.toml:19: jail.ipv6_pool \"2001:db8:4200::1/48\" has host bits set (did you mean \"2001:db8:4200::/48\"?)".to_string()]
    );
    assert_eq!(
        with("ipv6_pool = \"10.0.0.0/8\""),
        vec!["lab.toml:19: jail.ipv6_pool \"10.0.0.0/8\" is not an IPv6 prefix such as \"2001:db8:4200::/48\""
            .to_string()]
    );
    assert_eq!(
        with("ipv6_cooldown = \"1h\""),
        vec!["lab.toml:19: jail.ipv6_cooldown is only used with jail.ipv6_pool".to_string()]
    );
    assert_eq!(
        with("ipv6_fresh_per_user = 8"),
        vec!["lab.toml:19: jail.ipv6_fresh_per_user is only used with jail.ipv6_pool".to_string()]
    );
    assert_eq!(
        with("ipv6_pool = \"2001:db8:4200::/48\"\nipv6_fresh_per_user = 0"),
        vec!["lab.toml:20: jail.ipv6_fresh_per_user (0) must be between 1 and 1024".to_string()]
    );
    assert_eq!(
        with("ipv6_pool = \"2001:db8:4200::/48\"\nuplink = \"macvlan\"\nmacvlan_parent = \"eth0\""),
        vec!["lab.toml:19: jail.ipv6_pool needs uplink = \"routed\" (the host routes each claim's /64 to its jail)"
            .to_string()]
    );
}

#[test]
fn jail_section_errors_name_the_line() {
    let with = |extra: &str| errs(&format!("{LAB}\n[jail]\n{extra}\n"), &[]);
    // "[jail]" is line 18 of LAB + jail, the first key line 19.
    assert_eq!(with("colour = 1"), vec!["lab.toml:19: unknown field `colour`, expected one of `root_dir`, `pool`, `board_net`, `nat_interface`, `uplink`, `macvlan_parent`, `uid_base`, `keep_host_key`, `keys_dir`, `ssh_port`, `nfsroot_size`, `data_size`, `deny_out`, `pids_max`, `memory_max`, `cpu_weight`, `connections_max`, `parallel_builds`, `ipv6_pool`, `ipv6_cooldown`, `ipv6_fresh_per_user`, `host_ca`".to_string()]);
    assert_eq!(
        with("deny_out = [\"192.168.0.0/16\", \"10.0.0.1/8\", \"mgmt\"]"),
        vec![
            "lab.toml:19: jail.deny_out \"10.0.0.1/8\" has host bits set (did you mean \"10.0.0.0/8\"?)".to_string(),
            "lab.toml:19: jail.deny_out \"mgmt\" is not an IPv4 or IPv6 prefix such as \"192.168.0.0/16\"".to_string()
        ]
    );
    assert_eq!(
        with("pids_max = 5\nmemory_max = \"1M\"\ncpu_weight = 0\ndata_size = \"lots\""),
        vec![
            "lab.toml:22: jail.data_size \"lots\" is not a size such as \"8G\" (a whole number with K, M, G or T)"
                .to_string(),
            "lab.toml:19: jail.pids_max (5) must be between 16 and 4194304".to_string(),
            "lab.toml:20: jail.memory_max (1M) must be at least 64M".to_string(),
            "lab.toml:21: jail.cpu_weight (0) must be between 1 and 10000 (100: a normal process's share)".to_string(),
        ]
    );
    assert_eq!(
        with("pool = \"10.240.0.1/16\""),
        vec![
            "lab.toml:19: jail.pool: \"10.240.0.1/16\" has host bits set (did you mean \"10.240.0.0/16\"?)".to_string()
        ]
    );
    assert_eq!(
        with("uplink = \"bridge\""),
        vec!["lab.toml:19: jail.uplink \"bridge\" is not one of \"routed\", \"macvlan\"".to_string()]
    );
    assert_eq!(
        with("uplink = \"macvlan\""),
        vec!["lab.toml:19: jail.uplink = \"macvlan\" needs jail.macvlan_parent".to_string()]
    );
    assert_eq!(with("uid_base = 1000"), vec!["lab.toml:19: jail.uid_base (1000) must be between 65536 and 4294967295 (jail ids must not overlap the host's users)".to_string()]);
    assert_eq!(
        with("root_dir = \"jails\""),
        vec!["lab.toml:19: jail.root_dir must be an absolute path, not \"jails\"".to_string()]
    );
    assert_eq!(
        with("board_net = \"10.240.0.0/12\""),
        vec!["lab.toml:19: jail.pool (10.240.0.0/16) overlaps jail.board_net (10.240.0.0/12)".to_string()]
    );
    assert_eq!(
        with("nat_interface = \"eth0;x\""),
        vec!["lab.toml:19: jail.nat_interface \"eth0;x\" is not an interface name".to_string()]
    );
    assert_eq!(
        with("nfsroot_size = \"8 GB\""),
        vec!["lab.toml:19: jail.nfsroot_size \"8 GB\" is not a size such as \"8G\" (a whole number with K, M, G or T)"
            .to_string()]
    );
    assert_eq!(
        with("nfsroot_size = \"1M\""),
        vec!["lab.toml:19: jail.nfsroot_size (1M) must be between 64M and 16T".to_string()]
    );
    assert_eq!(with("nfsroot_size = 8"), vec!["lab.toml:19: invalid type: integer `8`, expected a string".to_string()]);
}

#[test]
fn sizes() {
    assert_eq!(parse_size("8G"), Some(8 << 30));
    assert_eq!(parse_size("512m"), Some(512 << 20));
    assert_eq!(parse_size("1T"), Some(1 << 40));
    assert_eq!(parse_size("4096"), Some(4096));
    for bad in ["", "G", "1.5G", "-1G", "8GB", "8 G", "99999999999T"] {
        assert_eq!(parse_size(bad), None, "{bad}");
    }
}

#[test]
fn jail_capacity_is_checked_when_jails_are_on() {
    let lab = LAB.replace("jail = \"none\"", "jail = \"linux\"") + "\n[jail]\npool = \"10.9.0.0/30\"\n";
    let other =
        BOARD.replace("rockpro64-1", "rockpro64-2").replace("vlan = 101", "vlan = 102").replace("port = 5", "port = 6");
    let e = errs(&lab, &[("a.toml", BOARD), ("b.toml", &other)]);
    assert_eq!(e, vec!["lab.toml:0: jail.pool (10.9.0.0/30) has room for 1 jails, not 2 boards".to_string()]);
}

#[test]
fn bad_durations_and_syntax() {
    let lab = LAB.replace("timeout = \"1s\"", "timeout = \"1 sec\"");
    let e = errs(&lab, &[]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("lab.toml:15: switches.poe1.timeout:"), "{e:?}");
    let e = errs("[daemon\n", &[]);
    assert!(e[0].starts_with("lab.toml:1:"), "{e:?}");
}

#[test]
fn cluster_table_is_optional_and_checked() {
    let d = dir_with(LAB, &[("a.toml", BOARD)]);
    assert_eq!(Config::load(d.path()).unwrap().cluster, None, "without [cluster] labd is alone");
    let good = format!("[cluster]\nhost = \"lab2\"\netcd = [\"http://10.0.0.1:2379\", \"http://[fd00::1]:2379\", \"http://etcd3.lab:2379\"]\n{PEER}");
    let d = dir_with(&format!("{LAB}\n{good}"), &[("a.toml", BOARD)]);
    let c = Config::load(d.path()).unwrap().cluster.unwrap();
    assert_eq!(c.host, "lab2");
    assert_eq!(c.prefix, "/boardlab");
    assert_eq!((c.host_ttl, c.timeout), (Duration::from_secs(5), Duration::from_secs(3)));
    assert_eq!(c.etcd_hostports().collect::<Vec<_>>(), vec!["10.0.0.1:2379", "[fd00::1]:2379", "etcd3.lab:2379"]);
    assert_eq!(c.peer.listen, "10.0.0.2:7420".parse().unwrap());
    assert_eq!(c.peer.cert, PathBuf::from("/etc/boardlab/peer/lab2.pem"));
    let with = |extra: &str| errs(&format!("{LAB}\n[cluster]\n{extra}\n{PEER}"), &[]);
    // "[cluster]" is line 18, the first key line 19.
    assert_eq!(
        with("etcd = [\"http://10.0.0.1:2379\"]"),
        vec!["lab.toml:18: cluster.host is required: this labd's name in the lab, e.g. host = \"lab2\"".to_string()]
    );
    assert_eq!(
        with("host = \"a b\"\netcd = [\"https://x:1\", \"http://x\", \"http://x:0\", \"10.0.0.1:2379\"]\nprefix = \"boardlab/\"\nhost_ttl = \"1s\"\ntimeout = \"1m\""),
        vec![
            "lab.toml:19: cluster.host \"a b\" is not a name (letters, digits, '-', '_', '.'; at most 64)".to_string(),
            "lab.toml:20: cluster.etcd \"https://x:1\" is not an etcd client URL such as \"http://10.0.0.1:2379\"".to_string(),
            "lab.toml:20: cluster.etcd \"http://x\" is not an etcd client URL such as \"http://10.0.0.1:2379\"".to_string(),
            "lab.toml:20: cluster.etcd \"http://x:0\" is not an etcd client URL such as \"http://10.0.0.1:2379\"".to_string(),
            "lab.toml:20: cluster.etcd \"10.0.0.1:2379\" is not an etcd client URL such as \"http://10.0.0.1:2379\"".to_string(),
            "lab.toml:21: cluster.prefix \"boardlab/\" must be a key path such as \"/boardlab\" (names after '/', no trailing '/')".to_string(),
            "lab.toml:22: cluster.host_ttl must be between 2s and 60s".to_string(),
            "lab.toml:23: cluster.timeout must be at most 30s".to_string(),
        ]
    );
    assert_eq!(
        with("host = \"h\"\netcd = []"),
        vec!["lab.toml:18: cluster.etcd is required: etcd's client URLs, e.g. etcd = [\"http://10.0.0.1:2379\"]"
            .to_string()]
    );
    let e = errs(&format!("{LAB}\n[cluster]\nhost = \"h\"\netcd = [\"http://e:1\"]\npeer_listen = \"0.0.0.0:7420\"\npeer_ca = \"ca.pem\"\n"), &[]);
    assert_eq!(
        e,
        vec![
            "lab.toml:21: cluster.peer_listen \"0.0.0.0:7420\" must be an address and port other hosts reach, such as \"10.0.0.2:7420\"".to_string(),
            "lab.toml:22: cluster.peer_ca \"ca.pem\" must be an absolute path".to_string(),
            "lab.toml:18: cluster.peer_cert is required: this host's certificate (PEM), for its cluster.host name".to_string(),
            "lab.toml:18: cluster.peer_key is required: this host's private key (PEM)".to_string(),
        ]
    );
}

const PEER: &str = "peer_listen = \"10.0.0.2:7420\"\npeer_ca = \"/etc/boardlab/peer/ca.pem\"\npeer_cert = \"/etc/boardlab/peer/lab2.pem\"\npeer_key = \"/etc/boardlab/peer/lab2.key\"\n";

#[test]
fn jail_host_ca_is_checked_when_the_config_loads() {
    use std::os::unix::fs::PermissionsExt;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("host_ca");
    let ca = crate::sshca::HostCa::generate(&key).unwrap();
    let lab = |path: &str| format!("{LAB}\n[jail]\nkeep_host_key = false\nhost_ca = \"{path}\"\n");
    let d = dir_with(&lab(&key.display().to_string()), &[("a.toml", BOARD)]);
    let c = Config::load(d.path()).unwrap();
    assert_eq!(c.jail.host_ca.as_ref(), Some(&ca));
    assert_eq!(Config::load(dir_with(LAB, &[]).path()).unwrap().jail.host_ca, None, "optional");
    assert_eq!(configured_host_ca(d.path()).unwrap(), Some(key.clone()));
    assert_eq!(configured_host_ca(dir_with(LAB, &[]).path()).unwrap(), None);
    assert_eq!(configured_host_ca(keys.path()).unwrap(), None, "no lab.toml");

    // Each problem names lab.toml's line (20: host_ca) and the key's file.
    let k = key.display().to_string();
    let one = |path: &str| {
        let e = errs(&lab(path), &[]);
        assert_eq!(e.len(), 1, "{e:?}");
        e[0].clone()
    };
    assert_eq!(one("host_ca"), "lab.toml:20: jail.host_ca must be an absolute path, not \"host_ca\"");
    let missing = one(&format!("{k}.missing"));
    assert!(
        missing.starts_with(&format!("lab.toml:20: jail.host_ca {k}.missing: cannot be read: No such file")),
        "{missing}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(
        one(&k),
        format!(
            "lab.toml:20: jail.host_ca {k}: is open to its group or others (mode 0640): the host CA signs every \
             jail's identity; chmod 600 it"
        )
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o604)).unwrap();
    assert!(one(&k).contains("(mode 0604)"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, "not a key\n").unwrap();
    let garbage = one(&k);
    assert!(garbage.starts_with(&format!("lab.toml:20: jail.host_ca {k}: is not an OpenSSH private key")), "{garbage}");
    // Found with the rest: every problem in one run.
    let e = errs(&format!("{}parallel_builds = 0\n", lab(&k)), &[]);
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(
        e[0].starts_with("lab.toml:21: jail.parallel_builds") && e[1].starts_with("lab.toml:20: jail.host_ca"),
        "{e:?}"
    );
    // labd ca init reads the path even while the key is missing.
    let d = dir_with(&lab("/nonexistent/host_ca"), &[]);
    assert!(Config::load(d.path()).is_err());
    assert_eq!(configured_host_ca(d.path()).unwrap(), Some(PathBuf::from("/nonexistent/host_ca")));
    let d = dir_with(&lab("relative"), &[]);
    assert!(configured_host_ca(d.path()).unwrap_err().contains("must be an absolute path"));
}

#[test]
fn switch_bound_in_flight() {
    let d = dir_with(LAB, &[("a.toml", BOARD)]);
    let c = Config::load(d.path()).unwrap();
    assert_eq!(c.switches["poe1"].max_in_flight, crate::config::switch::DEFAULT_MAX_IN_FLIGHT);
    let lab = LAB.replace("retries = 1\n", "retries = 1\nmax_in_flight = 4\n");
    let c = Config::load(dir_with(&lab, &[("a.toml", BOARD)]).path()).unwrap();
    assert_eq!(c.switches["poe1"].max_in_flight, 4);
    for bad in ["0", "65"] {
        let lab = LAB.replace("retries = 1\n", &format!("retries = 1\nmax_in_flight = {bad}\n"));
        let e = errs(&lab, &[("a.toml", BOARD)]);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("max_in_flight") && e[0].contains("between 1 and 64"), "{e:?}");
    }
}

#[test]
fn console_selftest_pattern_is_a_regular_expression() {
    let d = dir_with(LAB, &[("a.toml", BOARD)]);
    assert_eq!(Config::load(d.path()).unwrap().boards[0].console.as_ref().unwrap().selftest, None);
    let board = BOARD.replace("baud = 1500000 }", "baud = 1500000, selftest = \"U-Boot 20[0-9]{2}\" }");
    let c = Config::load(dir_with(LAB, &[("a.toml", &board)]).path()).unwrap();
    assert_eq!(c.boards[0].console.as_ref().unwrap().selftest.as_deref(), Some("U-Boot 20[0-9]{2}"));
    let board = BOARD.replace("baud = 1500000 }", "baud = 1500000, selftest = \"(unclosed\" }");
    let e = errs(LAB, &[("a.toml", &board)]);
    assert!(e.len() == 1 && e[0].starts_with("a.toml:4: console.selftest is not a regular expression"), "{e:?}");
}
