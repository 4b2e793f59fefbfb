#!/usr/bin/env bash
# test-deps.sh: install what ferry's tests need, when it is missing.
#
# Run as root on a Debian machine that has Go. Safe to run again: anything
# already present is left alone and nothing is printed for it. Prints one line
# per thing installed; exits non-zero with a message naming what failed.
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
	echo "test-deps: must run as root (apt-get install needs it)" >&2
	exit 1
fi

# Debian package that provides each command the tests start.
declare -A APT_FOR=(
	[/usr/sbin/sshd]=openssh-server # integration: the real SFTP server
	[rsync]=rsync                   # bench: the rsync baseline
	[rclone]=rclone                 # bench: the rclone baseline
	[lsyncd]=lsyncd                 # bench: the watch-mode baseline
)
ORDER=(/usr/sbin/sshd rsync rclone lsyncd)

have() {
	if [[ $1 == /* ]]; then [[ -x $1 ]]; else command -v "$1" >/dev/null 2>&1; fi
}

missing=()
for cmd in "${ORDER[@]}"; do
	have "$cmd" || missing+=("${APT_FOR[$cmd]}")
done

if ((${#missing[@]} > 0)); then
	export DEBIAN_FRONTEND=noninteractive
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	if ! apt-get update -qq >"$log" 2>&1; then
		echo "test-deps: apt-get update failed:" >&2
		tail -n 20 "$log" >&2
		exit 1
	fi
	for pkg in "${missing[@]}"; do
		if ! apt-get install -y -qq --no-install-recommends "$pkg" >"$log" 2>&1; then
			echo "test-deps: apt-get install $pkg failed:" >&2
			tail -n 20 "$log" >&2
			exit 1
		fi
		echo "test-deps: installed $pkg"
	done
	for cmd in "${ORDER[@]}"; do
		if ! have "$cmd"; then
			echo "test-deps: $cmd still missing after installing ${APT_FOR[$cmd]}" >&2
			exit 1
		fi
	done
fi

# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd

# Go-installed test servers: versitygw is the S3 server of the S3 tests
# (integration/s3server finds it on PATH or in GOPATH/bin).
if ! command -v versitygw >/dev/null 2>&1 && ! [[ -x "$(go env GOPATH)/bin/versitygw" ]]; then
	golog=$(mktemp)
	if ! go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 >"$golog" 2>&1; then
		echo "test-deps: go install versitygw failed:" >&2
		tail -n 20 "$golog" >&2
		rm -f "$golog"
		exit 1
	fi
	rm -f "$golog"
	echo "test-deps: installed versitygw into $(go env GOPATH)/bin"
fi
