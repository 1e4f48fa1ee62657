# boardlab: build, test and demo on a Debian 12 machine.
#
#   make demo    (as root) install the system packages, build, run a simulated lab
#   make test    (as root) install the system packages, create the test users, run every test
#
# Only the Rust toolchain is assumed (rustup's cargo); everything else is
# installed by `make deps` from Debian's packages.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

# rustup puts cargo in ~/.cargo/bin and ~/.cargo/env adds it to PATH, but a
# non-login shell (CI, sudo, cron) may not have sourced it.
ifeq ($(shell command -v cargo 2>/dev/null),)
export PATH := $(or $(HOME),/root)/.cargo/bin:$(PATH)
endif

CARGO ?= cargo

# What labd, labsim and the tests run or link against:
#   snmpd snmp            net-snmp: labsim's PoE switch (pass_persist), snmpget/snmpset for checks
#   dnsmasq-base          DHCP and TFTP on each board's link
#   openssh-server/client the jail's sshd, and ssh for the forced-command tests
#   iproute2 nftables     links, VLANs, namespaces, veth; the jails' firewall
#   libudev-dev pkg-config  the udev crate (console lookup by ID_SERIAL_SHORT)
#   procps                ps, pgrep and sysctl, used by tests and the demo
#   nfs-ganesha(-vfs) rpcbind  the boards' NFS root, served in user space
#                         (NFSv4 only: rpcbind is not needed by the jails)
#   libnfs-utils          nfs-cat: labsim's boards read from their NFS root
#   socat                 raw socket and pty plumbing in tests and the demo
#   iputils-ping          ping inside jails (isolation checks in tests/jail.rs)
#   e2fsprogs mount       mkfs.ext4/e2fsck, mount/losetup: each claim's nfsroot image
#   etcd-server etcd-client  the shared claims of a lab of several hosts: the
#                         tests start their own three-member clusters on loopback
#   protobuf-compiler     protoc, which the etcd-client crate's build runs
#   openssl               s_client: strangers knocking on the peer channel (tests/cluster.rs)
#   umockdev              recorded USB serial adapters fed to libudev (tests/udev.rs)
#   chromium chromium-driver  headless Chromium and chromedriver (WebDriver): the
#                         status page in a real browser (tests/web.rs)
#   dosfstools mtools fdisk  mkfs.vfat, mcopy and sfdisk: the FAT card image a
#                         jail writes to /dev/sdcard (tests/sdcard.rs)
#   bmap-tools            bmaptool create: the .bmap of an image for `sd flash`
#                         (tests/sdcard.rs, make bench)
DEB_PACKAGES := snmpd snmp dnsmasq-base openssh-server openssh-client iproute2 \
	nftables libudev-dev pkg-config procps nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils socat iputils-ping \
	e2fsprogs mount etcd-server etcd-client protobuf-compiler openssl umockdev chromium chromium-driver \
	dosfstools mtools fdisk bmap-tools

# Unprivileged local accounts the tests connect as (SO_PEERCRED identities):
# two users and the trusted ssh gateway account.
TEST_USERS := bltest-alice bltest-bob bltest-gw

.PHONY: all build docs install deps test-users test demo demo-cluster bench lint fuzz clean

all: build

# labd, labcli and labjail (what a lab host installs), and labsim, the
# simulated lab of the demo, with labdocs (a crate of its own in the workspace).
build:
	$(CARGO) build --release --workspace --bins

# Man pages and shell completions, made from the clap definitions of
# labcli, labd and labsim by labdocs (labsim's crate), in target/docs/.
docs: build
	rm -rf target/docs
	target/release/labdocs man target/docs/man
	target/release/labdocs completions target/docs/completions

# What a lab host needs: labd and labjail (its jails' init, next to it) in
# sbin, labcli in bin, their man pages and labcli's and labd's completions
# for bash, zsh and fish. `make install PREFIX=/usr DESTDIR=pkg/` for a package.
PREFIX ?= /usr/local
DESTDIR ?=
install: docs
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man8 \
		$(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	install -m 0755 target/release/labd target/release/labjail $(DESTDIR)$(PREFIX)/sbin/
	install -m 0755 target/release/labcli $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 target/docs/man/man1/labcli*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 0644 target/docs/man/man8/labd*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	for t in labcli labd; do \
		install -m 0644 target/docs/completions/bash/$$t.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/$$t; \
		install -m 0644 target/docs/completions/zsh/_$$t $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_$$t; \
		install -m 0644 target/docs/completions/fish/$$t.fish $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/$$t.fish; \
	done

# Installs only what is missing, so that a rerun costs one dpkg-query.
# Services are not started by the install: the tests and labsim start their
# own snmpd, dnsmasq and ganesha, and system-wide ones would hold their ports.
deps:
	@missing=(); \
	for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing+=("$$p"); \
	done; \
	if [ $${#missing[@]} -eq 0 ]; then echo "deps: all system packages present"; exit 0; fi; \
	if [ "$$(id -u)" -ne 0 ]; then echo "deps: missing $${missing[*]}; run 'make deps' as root" >&2; exit 1; fi; \
	echo "deps: installing $${missing[*]}"; \
	made_policy=0; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; made_policy=1; \
	fi; \
	trap '[ $$made_policy -eq 0 ] || rm -f /usr/sbin/policy-rc.d' EXIT; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update; \
	apt-get install -y "$${missing[@]}"

test-users:
	@if [ "$$(id -u)" -ne 0 ]; then echo "test-users: run as root" >&2; exit 1; fi
	@for u in $(TEST_USERS); do \
		if id -u "$$u" >/dev/null 2>&1; then echo "test-users: $$u exists"; \
		else useradd --create-home --shell /bin/sh "$$u" && echo "test-users: created $$u"; fi; \
		usermod -p '*' "$$u"; \
	done

# The accounts get the password '*' (no password login possible, but not
# 'locked'), so that sshd without PAM accepts their keys in the ssh tests.

# Tests that need namespaces, root or a free port set themselves up.
test: deps test-users
	$(CARGO) build --workspace --bins --features fault-injection
	$(CARGO) test --workspace --features fault-injection

demo: deps build
	scripts/demo.sh

# One lab of three simulated hosts on a local three-member etcd.
demo-cluster: deps build
	scripts/demo-cluster.sh

# The benchmark suite: a release build with the test-only fault injection
# (to time a panicked board actor's restart), then labbench's table. It
# builds in its own target directory so that binaries with fault injection
# never land in target/release, where deployments take them from.
# `make bench BENCH_ARGS=--quick` for a shorter run.
bench: deps
	CARGO_TARGET_DIR=target/bench $(CARGO) build --release --workspace --features fault-injection --bins
	target/bench/release/labbench $(BENCH_ARGS)

# cargo fuzz on every target for FUZZ_SECONDS each (stable toolchain with
# RUSTC_BOOTSTRAP=1; installs cargo-fuzz if missing).
FUZZ_SECONDS ?= 60
fuzz:
	scripts/fuzz.sh $(FUZZ_SECONDS)

# Shell scripts: syntax always, shellcheck when it is installed.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --features fault-injection -- -D warnings
	bash -n scripts/demo.sh
	bash -n scripts/demo-cluster.sh
	bash -n scripts/demo-common.sh
	bash -n scripts/fuzz.sh
	bash -n .ci/run
	sh -n supervisors/labd.rc
	@if command -v shellcheck >/dev/null; then \
		shellcheck scripts/demo.sh scripts/demo-cluster.sh scripts/fuzz.sh .ci/run && shellcheck -s sh supervisors/labd.rc; \
	else echo "lint: shellcheck not installed, syntax checked only"; fi

clean:
	$(CARGO) clean
