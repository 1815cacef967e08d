#!/bin/sh
# Builds a throwaway chroot target under DIR from the host: /usr bind-mounted
# read-only (Debian 12 is merged-/usr, so /bin /sbin /lib are symlinks into
# it), a private writable /etc, /var, /root, /tmp, /run, /opt, and /proc and
# /dev bound from the host. Must run inside a private mount namespace
# (unshare -m), so every mount disappears with the test.
# Usage: ansible_target.sh DIR
set -eu
R=$1
mkdir -p "$R"
for d in usr etc var/lib var/log var/cache tmp root run opt proc dev sys boot/firmware; do
    mkdir -p "$R/$d"
done
chmod 1777 "$R/tmp"
for l in bin sbin lib lib64; do
    [ -L "$R/$l" ] || ln -s "usr/$l" "$R/$l"
done
mount --bind /usr "$R/usr"
mount -o remount,bind,ro "$R/usr"
# /usr/local writable (binaries the roles install go there)
mount -t tmpfs -o mode=0755 tmpfs "$R/usr/local"
mkdir -p "$R/usr/local/bin" "$R/usr/local/sbin"
mount --rbind /dev "$R/dev"
mount --bind /proc "$R/proc"
# /etc: only what python, useradd and fact gathering need
for f in passwd group shadow gshadow login.defs nsswitch.conf os-release \
         debian_version hostname hosts ld.so.cache; do
    [ -e "/etc/$f" ] && cp -L "/etc/$f" "$R/etc/$f"
done
cp -a /etc/alternatives "$R/etc/"
mkdir -p "$R/etc/default" "$R/etc/systemd/system" "$R/etc/skel" \
         "$R/etc/modules-load.d" "$R/etc/sysctl.d"
[ -e /etc/default/useradd ] && cp /etc/default/useradd "$R/etc/default/"
# an fstab with a swap line, for node_prep to comment out
cat > "$R/etc/fstab" <<'FSTAB'
UUID=0000-test / ext4 defaults 0 1
/swapfile none swap sw 0 0
FSTAB
# a Raspberry Pi boot command line, for node_prep's cgroup edit
echo "console=serial0,115200 console=tty1 root=PARTUUID=0-02 rootfstype=ext4 fsck.repair=yes rootwait" \
    > "$R/boot/firmware/cmdline.txt"
# the host's package database and apt's, read-only: the package steps run
# in --check mode against what Debian's apt would do here (nothing is
# installed: the target is never written by apt)
mkdir -p "$R/var/lib/dpkg" "$R/var/lib/apt" "$R/var/cache/apt" "$R/etc/apt"
mount --bind /var/lib/dpkg "$R/var/lib/dpkg"
mount -o remount,bind,ro "$R/var/lib/dpkg"
mount --bind /var/lib/apt "$R/var/lib/apt"
mount -o remount,bind,ro "$R/var/lib/apt"
mount --bind /var/cache/apt "$R/var/cache/apt"
mount -o remount,bind,ro "$R/var/cache/apt"
cp -a /etc/apt/. "$R/etc/apt/"
